package analysis

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/immune-project/immune/detector"
)

// number is a float64 written as null in JSON when it is NaN or infinite
// (no p-value, the open end of a one-sided interval).
type number float64

func (x number) MarshalJSON() ([]byte, error) {
	f := float64(x)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, f, 'g', -1, 64), nil
}

// UnmarshalJSON reads a number, null as NaN.
func (x *number) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*x = number(math.NaN())
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("number: %w", err)
	}
	*x = number(f)
	return nil
}

// Float is the number as a float64 (NaN for null).
func (x number) Float() float64 { return float64(x) }

// KPIReport is one KPI's verdict as JSON.
type KPIReport struct {
	Name     string           `json:"name"`
	Verdict  detector.Outcome `json:"verdict"`
	Critical bool             `json:"critical"`
	Weight   float64          `json:"weight"`
	Bad      string           `json:"bad"`
	Test     string           `json:"test"`
	// Alternative is the decision test's, the bad direction.
	Alternative string `json:"alternative"`
	// PValue is valid over the window: calibrated against Placebos
	// placebo deploys, or the test's times Looks (for an events/trials
	// KPI both are set: the larger of the two).
	PValue    number `json:"p_value"`
	Threshold number `json:"threshold"`
	Placebos  int    `json:"placebos"`
	InPhase   bool   `json:"placebos_in_phase"`
	// AcrossInstances: a concurrent baseline with selectors.instance, the
	// placebos from the instances before the deploy.
	AcrossInstances bool `json:"placebos_across_instances"`
	// Offset: for a concurrent KPI judged on its canary's own past, the
	// canary's instances' mean offset from the others before the deploy,
	// taken out (null otherwise).
	Offset   number `json:"offset"`
	Looks    int    `json:"looks,omitempty"`
	Baseline number `json:"baseline"`
	Canary   number `json:"canary"`
	// NBaseline and NCanary are the sample sizes (trials for proportions).
	NBaseline number `json:"n_baseline"`
	NCanary   number `json:"n_canary"`
	// Estimate is canary − baseline with its two-sided interval at
	// Confidence; the relative ones are fractions of |baseline|.
	Estimate    number `json:"estimate"`
	CILow       number `json:"ci_low"`
	CIHigh      number `json:"ci_high"`
	Confidence  number `json:"confidence"`
	RelEstimate number `json:"relative_estimate"`
	RelCILow    number `json:"relative_ci_low"`
	RelCIHigh   number `json:"relative_ci_high"`
	// MDE is the smallest change the KPI's data could have detected (80%
	// power at its threshold), RelMDE the same relative to the baseline;
	// null for failing KPIs and where not computed.
	MDE         number `json:"mde"`
	RelMDE      number `json:"relative_mde"`
	Reason      string `json:"reason"`
	Explanation string `json:"explanation"`
}

// Report is a decision as JSON: one line of `immune backtest --format json`.
type Report struct {
	ID        string           `json:"id"`
	Service   string           `json:"service,omitempty"`
	Version   string           `json:"version,omitempty"`
	Time      time.Time        `json:"time"`
	Verdict   detector.Outcome `json:"verdict"`
	Reason    string           `json:"reason"`
	DecidedAt *time.Time       `json:"decided_at"`
	At        time.Time        `json:"evaluated_at"`
	Looks     int              `json:"looks"`
	Planned   int              `json:"planned_looks"`
	Alpha     float64          `json:"alpha"`
	KPIs      []KPIReport      `json:"kpis"`
}

// Report returns the decision in the shape of its JSON.
func (d Decision) Report() Report {
	r := Report{
		ID: d.Deploy.ID, Service: d.Deploy.Service, Version: d.Deploy.Version, Time: d.Deploy.Time.UTC(),
		Verdict: d.Verdict.Outcome, Reason: d.Verdict.Reason, At: d.At.UTC(),
		Looks: d.Looks, Planned: d.Planned, Alpha: d.Alpha,
		KPIs: make([]KPIReport, 0, len(d.Verdict.KPIs)),
	}
	if !d.DecidedAt.IsZero() {
		t := d.DecidedAt.UTC()
		r.DecidedAt = &t
	}
	for _, k := range d.Verdict.KPIs {
		kr := KPIReport{
			Name: k.Name, Verdict: k.Outcome, Critical: k.Critical, Weight: k.Weight,
			Bad: k.Bad.String(), Test: k.Test.String(), Alternative: k.Alternative.String(),
			PValue: number(k.PValue), Threshold: number(k.Threshold), Placebos: k.Placebos, InPhase: k.InPhase, AcrossInstances: k.AcrossInstances, Offset: number(k.Offset), Looks: k.Looks,
			Baseline: number(k.BaselineLevel), Canary: number(k.CanaryLevel),
			NBaseline: number(math.NaN()), NCanary: number(math.NaN()),
			Estimate: number(k.Effect), CILow: number(k.EffectLow), CIHigh: number(k.EffectHigh),
			Confidence:  number(k.Confidence),
			RelEstimate: number(math.NaN()), RelCILow: number(math.NaN()), RelCIHigh: number(math.NaN()),
			MDE: number(k.MDE), RelMDE: number(k.RelMDE),
			Reason: k.Reason, Explanation: k.Sentence,
		}
		if k.Decision != nil {
			kr.NBaseline, kr.NCanary = number(k.Decision.NBaseline), number(k.Decision.NCanary)
		}
		if k.Relative {
			kr.RelEstimate, kr.RelCILow, kr.RelCIHigh = number(k.RelEffect), number(k.RelLow), number(k.RelHigh)
		}
		r.KPIs = append(r.KPIs, kr)
	}
	return r
}

// MarshalJSON writes the decision as its Report.
func (d Decision) MarshalJSON() ([]byte, error) { return json.Marshal(d.Report()) }
