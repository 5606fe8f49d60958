package deploy

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseCSV(t *testing.T) {
	at := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	tests := []struct {
		name    string
		in      string
		want    []Deploy
		wantErr string
	}{
		{"minimal", "id,time\nd1,2024-01-02T03:04:05Z\n", []Deploy{{ID: "d1", Time: at("2024-01-02T03:04:05Z")}}, ""},
		{"all columns any order", "version,time,id,service,previous_version,author\nv2,2024-01-02 03:04:05,d1,checkout,v1,ann\n",
			[]Deploy{{ID: "d1", Service: "checkout", Version: "v2", PreviousVersion: "v1", Time: at("2024-01-02T03:04:05Z")}}, ""},
		{"unix seconds", "id,time\nd1,1704164645\nd2,1704164645.5\n", []Deploy{
			{ID: "d1", Time: at("2024-01-02T03:04:05Z")},
			{ID: "d2", Time: at("2024-01-02T03:04:05Z").Add(500 * time.Millisecond)}}, ""},
		{"offset converted to UTC", "id,time\nd1,2024-01-02T04:04:05+01:00\n", []Deploy{{ID: "d1", Time: at("2024-01-02T03:04:05Z")}}, ""},
		{"comment lines", "id,time\n# skipped\nd1,0\n", []Deploy{{ID: "d1", Time: time.Unix(0, 0).UTC()}}, ""},
		{"empty", "", nil, "d.csv:1: empty file"},
		{"no time column", "id,when\nd1,0\n", nil, `d.csv:1: header has no "time" column`},
		{"duplicate column", "id,time,id\nd1,0,d2\n", nil, `d.csv:1: column "id" appears twice`},
		{"header only", "id,time\n", nil, "d.csv:2: no deploys after the header"},
		{"bad time and duplicate id, both reported", "id,time\nd1,yesterday\nd2,0\nd2,1\n", nil,
			"d.csv:2: deploy \"d1\": timestamp \"yesterday\": want 2006-01-02 15:04:05 (UTC), RFC 3339 or Unix seconds\nd.csv:4: id \"d2\" already used on line 3"},
		{"field count", "id,time\nd1,0,extra\n", nil, "d.csv:2: 3 fields, the header has 2"},
		{"empty id", "id,time\n,0\n", nil, "d.csv:2: id is empty"},
		{"bare quote", "id,time\n\"d1,0\n", nil, "d.csv:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCSV("d.csv", []byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want prefix %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d deploys, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if !(got[i].Time.Equal(tt.want[i].Time) && sameExceptTime(got[i], tt.want[i])) {
					t.Errorf("deploy %d: got %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func sameExceptTime(a, b Deploy) bool {
	a.Time, b.Time = time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}

func FuzzParseCSV(f *testing.F) {
	for _, s := range []string{"id,time\nd1,0\n", "id,time,service\nd,2024-01-02 03:04:05,x\n", "id,time\n\"a\nb\",1\n", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ds, err := ParseCSV("fuzz.csv", data)
		if err == nil && len(ds) == 0 {
			t.Fatal("no error and no deploys")
		}
		seen := map[string]bool{}
		for _, d := range ds {
			if d.ID == "" || seen[d.ID] {
				t.Fatalf("bad deploy accepted: %+v", d)
			}
			seen[d.ID] = true
		}
	})
}
