package web

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/immune-project/immune/detector"
)

//go:embed templates/*.html templates/style.css
var files embed.FS

// Options configure Pages. The zero value is usable.
type Options struct {
	// Base is the path prefix the pages are served under ("" for the
	// root), used in the links between pages.
	Base   string
	Logger *slog.Logger
	// Refresh is how often, in seconds, a list or a running report
	// reloads itself (30 when zero; negative for never).
	Refresh int
}

// Pages serves the on-call pages from a Store.
type Pages struct {
	store   Store
	opts    Options
	log     *slog.Logger
	css     template.CSS
	list    *template.Template
	report  *template.Template
	errPage *template.Template
}

// New parses the templates and returns the Pages of store.
func New(store Store, opts Options) (*Pages, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Refresh == 0 {
		opts.Refresh = 30
	}
	opts.Base = strings.TrimRight(opts.Base, "/")
	css, err := files.ReadFile("templates/style.css")
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	p := &Pages{store: store, opts: opts, log: opts.Logger, css: template.CSS(css)}
	base, err := template.New("").Funcs(funcs).ParseFS(files, "templates/layout.html", "templates/chart.html")
	if err != nil {
		return nil, fmt.Errorf("web: parse templates: %w", err)
	}
	for _, t := range []struct {
		dst  **template.Template
		file string
	}{{&p.list, "templates/list.html"}, {&p.report, "templates/report.html"}, {&p.errPage, "templates/error.html"}} {
		c, err := base.Clone()
		if err == nil {
			c, err = c.ParseFS(files, t.file)
		}
		if err != nil {
			return nil, fmt.Errorf("web: parse %s: %w", t.file, err)
		}
		*t.dst = c
	}
	return p, nil
}

// Register serves GET /, GET /deploys and GET /deploys/{id} on mux.
func (p *Pages) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET "+p.opts.Base+"/{$}", p.serveList)
	mux.HandleFunc("GET "+p.opts.Base+"/deploys", p.serveList)
	mux.HandleFunc("GET "+p.opts.Base+"/deploys/{id}", p.serveReport)
}

// page is what the layout needs; the content templates read the rest.
type page struct {
	Title   string
	Base    string
	CSS     template.CSS
	Refresh int
}

type listPage struct {
	page
	Deploys []listRow
}

type listRow struct {
	DeploySummary
	TimeToVerdict string
}

type reportPage struct {
	page
	R             Report
	Headline      string
	Explanation   []string
	TimeToVerdict string
	KPIs          []kpiView
}

type kpiView struct {
	K      KPIReport
	Anchor string
	Chart  chart
}

type errorPage struct {
	page
	Headline, Message string
}

func (p *Pages) newPage(title string, refresh bool) page {
	pg := page{Title: title, Base: p.opts.Base, CSS: p.css}
	if refresh && p.opts.Refresh > 0 {
		pg.Refresh = p.opts.Refresh
	}
	return pg
}

func (p *Pages) serveList(w http.ResponseWriter, r *http.Request) {
	ds, err := p.store.Deploys(r.Context())
	if err != nil {
		p.fail(w, r, err)
		return
	}
	lp := listPage{page: p.newPage("Deploys", true)}
	for _, d := range ds {
		lp.Deploys = append(lp.Deploys, listRow{DeploySummary: d, TimeToVerdict: timeToVerdict(d)})
	}
	p.render(w, r, http.StatusOK, p.list, lp)
}

func (p *Pages) serveReport(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	rep, ok, err := p.store.Report(r.Context(), id)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	if !ok {
		p.render(w, r, http.StatusNotFound, p.errPage, errorPage{
			page:     p.newPage("Not found", false),
			Headline: "No such deploy",
			Message:  fmt.Sprintf("immune has no deploy %q. It may be older than what immune keeps, or the link is wrong.", id),
		})
		return
	}
	rp := reportPage{
		page:          p.newPage(fmt.Sprintf("%s %s: %s", rep.Service, rep.Version, rep.Verdict), rep.Verdict == VerdictRunning),
		R:             rep,
		Headline:      headline(rep),
		TimeToVerdict: timeToVerdict(rep.DeploySummary),
	}
	for _, line := range strings.Split(rep.Explanation, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			rp.Explanation = append(rp.Explanation, line)
		}
	}
	for i, k := range rep.KPIs {
		anchor := fmt.Sprintf("%d-%s", i+1, slug(k.Name))
		rp.KPIs = append(rp.KPIs, kpiView{K: k, Anchor: anchor, Chart: newChart("chart-"+anchor, k, rep.Start, rep.Decided, rep.Revert)})
	}
	p.render(w, r, http.StatusOK, p.report, rp)
}

func (p *Pages) fail(w http.ResponseWriter, r *http.Request, err error) {
	p.log.Error("web page", "path", r.URL.Path, "err", err.Error())
	p.render(w, r, http.StatusInternalServerError, p.errPage, errorPage{
		page:     p.newPage("Error", false),
		Headline: "Cannot read the deploys",
		Message:  err.Error(),
	})
}

func (p *Pages) render(w http.ResponseWriter, r *http.Request, code int, t *template.Template, data any) {
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", data); err != nil {
		p.log.Error("web page: render", "path", r.URL.Path, "err", err.Error())
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// headline is the verdict in a few words, shown in large type.
func headline(r Report) string {
	switch r.Verdict {
	case VerdictFail:
		switch {
		case r.Revert != nil:
			return "FAIL: reverted at " + r.Revert.UTC().Format("15:04 UTC")
		case r.Shadow:
			return "FAIL (shadow mode: not reverted)"
		}
		return "FAIL"
	case VerdictPass:
		return "PASS"
	case VerdictInconclusive:
		return "INCONCLUSIVE: not enough evidence either way"
	case VerdictRunning:
		return "RUNNING: no verdict yet"
	case VerdictSkipped:
		return "SKIPPED: not analysed"
	}
	return strings.ToUpper(r.Verdict)
}

// timeToVerdict is how long the verdict took: "running" while there is
// none yet, "—" when there will be none (skipped) or its time is unknown.
func timeToVerdict(d DeploySummary) string {
	switch {
	case d.Verdict == VerdictRunning:
		return "running"
	case d.Verdict == VerdictSkipped || d.Decided.IsZero():
		return "—"
	}
	return duration(d.Decided.Sub(d.Start))
}

// duration prints d as 45s, 25m, 25m10s, 1h05m.
func duration(d time.Duration) string {
	if d < 0 {
		return "-" + duration(-d)
	}
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		m, s := int(d/time.Minute), int(d%time.Minute/time.Second)
		if s == 0 {
			return fmt.Sprintf("%dm", m)
		}
		return fmt.Sprintf("%dm%02ds", m, s)
	}
	return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
}

func slug(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '-' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	return b.String()
}

var funcs = template.FuncMap{
	"num":       num,
	"signed":    signed,
	"pval":      pval,
	"threshold": threshold,
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05")
	},
	"deref":      func(t *time.Time) time.Time { return *t },
	"f1":         func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) },
	"add":        func(a, b float64) float64 { return a + b },
	"sub":        func(a, b float64) float64 { return a - b },
	"half":       func(v float64) float64 { return v / 2 },
	"pathEscape": url.PathEscape,
}

// num prints a value with about four significant digits.
func num(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "—"
	case v == 0:
		return "0"
	case math.Abs(v) >= 1e6 || math.Abs(v) < 1e-3:
		return strings.Replace(strconv.FormatFloat(v, 'g', 3, 64), "-", "−", 1)
	}
	d := max(0, min(6, 3-int(math.Floor(math.Log10(math.Abs(v))))))
	s := strconv.FormatFloat(v, 'f', d, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return strings.Replace(s, "-", "−", 1)
}

// signed is num with a + on positive values.
func signed(v float64) string {
	if v > 0 && !math.IsInf(v, 0) {
		return "+" + num(v)
	}
	return num(v)
}

// pval prints a KPI's p-value p beside its threshold t as the verdict
// sentences do (detector.FormatPair): with the digits that tell them apart.
func pval(p, t float64) string {
	ps, _ := pvalPair(p, t)
	return ps
}

// threshold prints the threshold t beside the p-value p, as pval does.
func threshold(p, t float64) string {
	_, ts := pvalPair(p, t)
	return ts
}

func pvalPair(p, t float64) (string, string) {
	ps, ts := detector.FormatPair(p, t)
	if math.IsNaN(p) {
		ps = "—"
	}
	if math.IsNaN(t) {
		ts = "—"
	}
	return ps, ts
}
