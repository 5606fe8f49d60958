// Package annotator is the seam through which an analysis marks deploys on
// the graphs: a region from a deploy's start to the end of its analysis,
// and a point at each verdict and at a revert. Implementations live in
// subpackages (grafana, store); Async wraps any of them so that an
// annotation never blocks an analysis or a revert.
package annotator

import (
	"context"
	"fmt"
	"html"
	"net/url"
	"strings"
	"time"

	"github.com/immune-project/immune/deploy"
)

// Kind is what happened to a deploy.
type Kind string

// The kinds of event an analysis reports.
const (
	// KindDeploy: the analysis of a deploy started; the region opens at
	// the deploy's time.
	KindDeploy Kind = "deploy"
	// KindVerdict: the analysis decided (pass, fail or inconclusive).
	KindVerdict Kind = "verdict"
	// KindRevert: the revert path was pulled.
	KindRevert Kind = "revert"
	// KindEnd: the analysis ended; the region extends to At and carries
	// the final verdict.
	KindEnd Kind = "end"
)

// Verdicts carried by events.
const (
	VerdictPass         = "pass"
	VerdictFail         = "fail"
	VerdictInconclusive = "inconclusive"
)

// Event is one thing to mark on the graphs.
type Event struct {
	Kind Kind
	// At is when it happened (the analysis' time, not a clock read by the
	// annotator).
	At     time.Time
	Deploy deploy.Deploy
	// Verdict is pass, fail or inconclusive (verdict, revert and end).
	Verdict string
	// FailingKPIs are the names of the KPIs that failed; each becomes a
	// kpi:<name> tag.
	FailingKPIs []string
	// Text is the explanation, one sentence per line.
	Text string
	// Shadow: the deploy was judged in shadow mode, never reverted.
	Shadow bool
}

// Annotator marks events on graphs. Annotate may block on I/O; callers on
// the analysis path wrap it in Async.
type Annotator interface {
	Annotate(ctx context.Context, ev Event) error
}

// Check reports an event that cannot be annotated.
func (ev Event) Check() error {
	switch ev.Kind {
	case KindDeploy, KindVerdict, KindRevert, KindEnd:
	default:
		return fmt.Errorf("%w: kind %q is not one of deploy, verdict, revert, end", ErrBadEvent, ev.Kind)
	}
	if ev.Deploy.ID == "" {
		return fmt.Errorf("%w: %s event without a deploy id", ErrBadEvent, ev.Kind)
	}
	if ev.At.IsZero() {
		return fmt.Errorf("%w: %s event of deploy %s without a time", ErrBadEvent, ev.Kind, ev.Deploy.ID)
	}
	switch ev.Verdict {
	case "", VerdictPass, VerdictFail, VerdictInconclusive:
	default:
		return fmt.Errorf("%w: deploy %s: verdict %q is not one of pass, fail, inconclusive", ErrBadEvent, ev.Deploy.ID, ev.Verdict)
	}
	if ev.Kind == KindVerdict && ev.Verdict == "" {
		return fmt.Errorf("%w: verdict event of deploy %s without a verdict", ErrBadEvent, ev.Deploy.ID)
	}
	return nil
}

// Start is where the deploy's region begins: the deploy's time, or the
// event's when the deploy has none.
func (ev Event) Start() time.Time {
	if !ev.Deploy.Time.IsZero() {
		return ev.Deploy.Time
	}
	return ev.At
}

// Tags that mark annotations. TagImmune is on every annotation immune
// writes; the kind tags tell the region from the points.
const (
	TagImmune  = "immune"
	TagShadow  = "shadow"
	TagRegion  = "immune:region"
	TagVerdict = "immune:verdict"
	TagRevert  = "immune:revert"
)

// DeployTag is the tag of every annotation of a deploy.
func DeployTag(id string) string { return "deploy:" + id }

// KindTag is the tag that tells the region (deploy, end) from the verdict
// and revert points.
func KindTag(k Kind) string {
	switch k {
	case KindVerdict:
		return TagVerdict
	case KindRevert:
		return TagRevert
	default:
		return TagRegion
	}
}

// Tags are the tags of the annotation an event writes: immune, the kind
// tag, service:<s>, deploy:<id>, verdict:<v> once decided, kpi:<name> for
// each failing KPI, and shadow.
func Tags(ev Event) []string {
	tags := []string{TagImmune, KindTag(ev.Kind), DeployTag(ev.Deploy.ID)}
	if ev.Deploy.Service != "" {
		tags = append(tags, "service:"+ev.Deploy.Service)
	}
	if ev.Deploy.Version != "" {
		tags = append(tags, "version:"+ev.Deploy.Version)
	}
	if ev.Verdict != "" {
		tags = append(tags, "verdict:"+ev.Verdict)
	}
	seen := map[string]bool{}
	for _, k := range ev.FailingKPIs {
		if k == "" || seen[k] {
			continue
		}
		seen[k] = true
		tags = append(tags, "kpi:"+k)
	}
	if ev.Shadow {
		tags = append(tags, TagShadow)
	}
	return tags
}

// ReportURL is the link to a deploy's report page under base ("" when
// base is empty).
func ReportURL(base, id string) string {
	if base == "" {
		return ""
	}
	return strings.TrimRight(base, "/") + "/deploys/" + url.PathEscape(id)
}

// Text is the text of the annotation an event writes: a title line, the
// explanation sentences, and a link to the report page when reportURL is
// not empty. Grafana renders annotation text as (sanitised) HTML and
// ignores newlines, so the lines are joined with <br>, the link is an <a>
// element and everything else is escaped.
func Text(ev Event, reportURL string) string {
	var b strings.Builder
	b.WriteString(html.EscapeString(title(ev)))
	for _, line := range strings.Split(strings.TrimSpace(ev.Text), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			b.WriteString("<br>")
			b.WriteString(html.EscapeString(line))
		}
	}
	if reportURL != "" {
		fmt.Fprintf(&b, "<br><a href=\"%s\">report</a>", html.EscapeString(reportURL))
	}
	return b.String()
}

func title(ev Event) string {
	d := ev.Deploy
	what := d.Service
	if what == "" {
		what = d.ID
	}
	if d.Version != "" {
		what += " " + d.Version
		if d.PreviousVersion != "" {
			what += " (from " + d.PreviousVersion + ")"
		}
	}
	mode := ""
	if ev.Shadow {
		mode = " [shadow]"
	}
	switch ev.Kind {
	case KindDeploy:
		s := "deploy " + what
		if d.Author != "" {
			s += " by " + d.Author
		}
		return s + ": analysis started" + mode
	case KindVerdict:
		return "verdict " + ev.Verdict + ": " + what + mode
	case KindRevert:
		return "reverted: " + what + mode
	default:
		if ev.Verdict == "" {
			return "deploy " + what + ": analysis ended" + mode
		}
		return "deploy " + what + ": " + ev.Verdict + mode
	}
}
