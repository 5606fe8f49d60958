package grafana_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeGrafana follows Grafana's documented HTTP API for annotations and
// dashboards (https://grafana.com/docs/grafana/latest/developers/http_api/annotations/):
// POST /api/annotations answers {"message":"Annotation added","id":N};
// PATCH /api/annotations/:id {"message":"Annotation patched"} or 404;
// GET /api/annotations filters by from, to, tags (all must match unless
// matchAny), type, dashboardId, panelId, limit (default 100), newest
// first; GET /api/dashboards/uid/:uid {"dashboard":{...},"meta":{...}} or
// 404. Bearer auth: 401 without a valid token, 403 when the token lacks a
// permission. Errors are {"message": ...}.
type fakeGrafana struct {
	t     *testing.T
	srv   *httptest.Server
	token string

	mu          sync.Mutex
	nextID      uint
	annotations map[uint]*fakeAnnotation
	dashboards  map[string]uint // uid → id
	forbidden   bool            // 403 on every write
	faults      []fault         // answered before anything else, in order
	requests    []string        // "METHOD path?query"
	echoAuth    bool            // a hostile server: 401 bodies echo the Authorization header
}

type fault struct {
	method string // "" for any
	code   int
	msg    string
}

type fakeAnnotation struct {
	ID          uint     `json:"id"`
	AlertID     uint     `json:"alertId"`
	DashboardID uint     `json:"dashboardId"`
	PanelID     uint     `json:"panelId"`
	UserID      uint     `json:"userId"`
	NewState    string   `json:"newState"`
	PrevState   string   `json:"prevState"`
	Time        int64    `json:"time"`
	TimeEnd     int64    `json:"timeEnd"`
	Text        string   `json:"text"`
	Tags        []string `json:"tags"`
	Login       string   `json:"login"`
	Data        struct{} `json:"data"`
}

func newFakeGrafana(t *testing.T, token string) *fakeGrafana {
	f := &fakeGrafana{t: t, token: token, nextID: 1, annotations: map[uint]*fakeAnnotation{}, dashboards: map[string]uint{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/annotations", f.create)
	mux.HandleFunc("PATCH /api/annotations/{id}", f.patch)
	mux.HandleFunc("GET /api/annotations", f.find)
	mux.HandleFunc("GET /api/dashboards/uid/{uid}", f.dashboard)
	f.srv = httptest.NewServer(f.middleware(mux))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeGrafana) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
		auth := r.Header.Get("Authorization")
		if auth != "Bearer "+f.token {
			msg := "Unauthorized"
			if auth != "" {
				msg = "invalid API key"
			}
			if f.echoAuth {
				msg += ": " + auth
			}
			f.mu.Unlock()
			reply(w, http.StatusUnauthorized, map[string]any{"message": msg})
			return
		}
		for i, flt := range f.faults {
			if flt.method == "" || flt.method == r.Method {
				f.faults = slices.Delete(f.faults, i, i+1)
				f.mu.Unlock()
				reply(w, flt.code, map[string]any{"message": flt.msg})
				return
			}
		}
		if f.forbidden && r.Method != http.MethodGet {
			f.mu.Unlock()
			reply(w, http.StatusForbidden, map[string]any{"message": "You'll need additional permissions to perform this action. Permissions needed: annotations:create"})
			return
		}
		f.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

type annotationRequest struct {
	DashboardID  uint     `json:"dashboardId"`
	DashboardUID string   `json:"dashboardUID"`
	PanelID      uint     `json:"panelId"`
	Time         int64    `json:"time"`
	TimeEnd      int64    `json:"timeEnd"`
	Tags         []string `json:"tags"`
	Text         string   `json:"text"`
}

func (f *fakeGrafana) create(w http.ResponseWriter, r *http.Request) {
	var req annotationRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		reply(w, http.StatusBadRequest, map[string]any{"message": "bad request data"})
		return
	}
	if req.Text == "" {
		reply(w, http.StatusBadRequest, map[string]any{"message": "Text field can't be empty"})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if req.DashboardID != 0 && !slices.Contains(mapValues(f.dashboards), req.DashboardID) {
		reply(w, http.StatusNotFound, map[string]any{"message": "Dashboard not found"})
		return
	}
	if req.TimeEnd == 0 {
		req.TimeEnd = req.Time
	}
	a := &fakeAnnotation{ID: f.nextID, DashboardID: req.DashboardID, PanelID: req.PanelID, UserID: 7, Time: req.Time,
		TimeEnd: req.TimeEnd, Text: req.Text, Tags: req.Tags, Login: "sa-immune"}
	f.nextID++
	f.annotations[a.ID] = a
	reply(w, http.StatusOK, map[string]any{"message": "Annotation added", "id": a.ID})
}

func mapValues(m map[string]uint) []uint {
	var out []uint
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func (f *fakeGrafana) patch(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		reply(w, http.StatusBadRequest, map[string]any{"message": "annotationId is invalid"})
		return
	}
	var req annotationRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		reply(w, http.StatusBadRequest, map[string]any{"message": "bad request data"})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.annotations[uint(id)]
	if !ok {
		reply(w, http.StatusNotFound, map[string]any{"message": "Could not find annotation to update"})
		return
	}
	if req.Time != 0 {
		a.Time = req.Time
	}
	if req.TimeEnd != 0 {
		a.TimeEnd = req.TimeEnd
	}
	if req.Tags != nil {
		a.Tags = req.Tags
	}
	if req.Text != "" {
		a.Text = req.Text
	}
	reply(w, http.StatusOK, map[string]any{"message": "Annotation patched"})
}

func (f *fakeGrafana) find(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	num := func(name string) (int64, bool) {
		v := q.Get(name)
		if v == "" {
			return 0, true
		}
		n, err := strconv.ParseInt(v, 10, 64)
		return n, err == nil
	}
	from, ok1 := num("from")
	to, ok2 := num("to")
	dash, ok3 := num("dashboardId")
	panel, ok4 := num("panelId")
	limit, ok5 := num("limit")
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 {
		reply(w, http.StatusBadRequest, map[string]any{"message": "bad request data"})
		return
	}
	if limit == 0 {
		limit = 100
	}
	tags, matchAny := q["tags"], q.Get("matchAny") == "true"
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []fakeAnnotation{}
	for _, a := range f.annotations {
		if (from != 0 && a.TimeEnd < from) || (to != 0 && a.Time > to) ||
			(dash != 0 && int64(a.DashboardID) != dash) || (panel != 0 && int64(a.PanelID) != panel) ||
			(q.Get("type") == "alert" && a.AlertID == 0) || (q.Get("type") == "annotation" && a.AlertID != 0) {
			continue
		}
		if len(tags) > 0 {
			n := 0
			for _, t := range tags {
				if slices.Contains(a.Tags, t) {
					n++
				}
			}
			if (matchAny && n == 0) || (!matchAny && n < len(tags)) {
				continue
			}
		}
		out = append(out, *a)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Time != out[j].Time {
			return out[i].Time > out[j].Time
		}
		return out[i].ID > out[j].ID
	})
	if int64(len(out)) > limit {
		out = out[:limit]
	}
	reply(w, http.StatusOK, out)
}

func (f *fakeGrafana) dashboard(w http.ResponseWriter, r *http.Request) {
	uid := r.PathValue("uid")
	f.mu.Lock()
	id, ok := f.dashboards[uid]
	f.mu.Unlock()
	if !ok {
		reply(w, http.StatusNotFound, map[string]any{"message": "Dashboard not found"})
		return
	}
	reply(w, http.StatusOK, map[string]any{
		"dashboard": map[string]any{"id": id, "uid": uid, "title": "Checkout " + uid, "panels": []any{}, "version": 3},
		"meta":      map[string]any{"type": "db", "slug": "checkout-" + strings.ToLower(uid), "url": "/d/" + uid + "/checkout", "folderId": 0, "canSave": true},
	})
}

// fail makes the next request of the method ("" any) answer code.
func (f *fakeGrafana) fail(method string, code int, msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, fault{method: method, code: code, msg: msg})
}

func (f *fakeGrafana) all() []fakeAnnotation {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []fakeAnnotation
	for _, a := range f.annotations {
		out = append(out, *a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (f *fakeGrafana) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.requests {
		if strings.HasPrefix(r, method+" /api/annotations") {
			n++
		}
	}
	return n
}

func (a fakeAnnotation) String() string {
	return fmt.Sprintf("#%d dash=%d panel=%d %d..%d %v", a.ID, a.DashboardID, a.PanelID, a.Time, a.TimeEnd, a.Tags)
}
