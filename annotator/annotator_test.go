package annotator_test

import (
	"strings"
	"testing"
	"time"

	"github.com/immune-project/immune/annotator"
	"github.com/immune-project/immune/deploy"
)

func TestTagsAndText(t *testing.T) {
	d := deploy.Deploy{ID: "ck-42", Service: "checkout", Version: "v2", PreviousVersion: "v1", Author: "ana",
		Time: time.Date(2026, 11, 25, 2, 50, 0, 0, time.UTC)}
	at := time.Date(2026, 11, 25, 3, 20, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		ev       annotator.Event
		base     string
		wantTags string
		wantText string
	}{
		{
			name:     "deploy",
			ev:       annotator.Event{Kind: annotator.KindDeploy, At: d.Time, Deploy: d},
			base:     "https://immune.example/",
			wantTags: "immune immune:region deploy:ck-42 service:checkout version:v2",
			wantText: "deploy checkout v2 (from v1) by ana: analysis started<br><a href=\"https://immune.example/deploys/ck-42\">report</a>",
		},
		{
			name: "failed verdict with KPIs, shadow",
			ev: annotator.Event{Kind: annotator.KindVerdict, At: at, Deploy: d, Verdict: "fail", Shadow: true,
				FailingKPIs: []string{"conversion", "latency_p99", "conversion"},
				Text:        "conversion fell from 3.1% to 2.4% (p=0.0004 < 0.005).\n\nlatency_p99 rose <by 40ms>."},
			wantTags: "immune immune:verdict deploy:ck-42 service:checkout version:v2 verdict:fail kpi:conversion kpi:latency_p99 shadow",
			wantText: "verdict fail: checkout v2 (from v1) [shadow]<br>conversion fell from 3.1% to 2.4% (p=0.0004 &lt; 0.005).<br>latency_p99 rose &lt;by 40ms&gt;.",
		},
		{
			name:     "revert",
			ev:       annotator.Event{Kind: annotator.KindRevert, At: at, Deploy: d, Verdict: "fail", FailingKPIs: []string{"errors"}},
			wantTags: "immune immune:revert deploy:ck-42 service:checkout version:v2 verdict:fail kpi:errors",
			wantText: "reverted: checkout v2 (from v1)",
		},
		{
			name:     "end",
			ev:       annotator.Event{Kind: annotator.KindEnd, At: at, Deploy: deploy.Deploy{ID: "x/y"}, Verdict: "pass"},
			base:     "http://h",
			wantTags: "immune immune:region deploy:x/y verdict:pass",
			wantText: "deploy x/y: pass<br><a href=\"http://h/deploys/x%2Fy\">report</a>",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := strings.Join(annotator.Tags(tc.ev), " "); got != tc.wantTags {
				t.Errorf("Tags = %q, want %q", got, tc.wantTags)
			}
			if got := annotator.Text(tc.ev, annotator.ReportURL(tc.base, tc.ev.Deploy.ID)); got != tc.wantText {
				t.Errorf("Text = %q, want %q", got, tc.wantText)
			}
		})
	}
}

func TestStart(t *testing.T) {
	at := time.Unix(100, 0)
	if got := (annotator.Event{At: at}).Start(); !got.Equal(at) {
		t.Errorf("Start without deploy time = %v, want %v", got, at)
	}
	dt := time.Unix(50, 0)
	if got := (annotator.Event{At: at, Deploy: deploy.Deploy{Time: dt}}).Start(); !got.Equal(dt) {
		t.Errorf("Start = %v, want %v", got, dt)
	}
}
