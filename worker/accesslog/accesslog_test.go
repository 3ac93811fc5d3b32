package accesslog_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/internal/cflog"
	"github.com/reportmailer/reportmailer/worker/accesslog"
)

func TestRead(t *testing.T) {
	at := time.Date(2026, 11, 26, 9, 30, 5, 0, time.UTC)
	good := cflog.Line(cflog.Request{Time: at, Path: "/u1/a.pdf", Query: "rmt=PDFpUcE6Z3s3oEQtnvEvLQ&Expires=1&Signature=x&Key-Pair-Id=K", Status: 200})
	noQuery := cflog.Line(cflog.Request{Time: at.Add(time.Minute), Path: "/favicon.ico", Status: 403})
	header := "#Version: 1.0\n#Fields: " + cflog.Fields + "\n"
	want1 := accesslog.Entry{Time: at, Method: "GET", URIStem: "/u1/a.pdf", Query: "rmt=PDFpUcE6Z3s3oEQtnvEvLQ&Expires=1&Signature=x&Key-Pair-Id=K", Status: 200}
	want2 := accesslog.Entry{Time: at.Add(time.Minute), Method: "GET", URIStem: "/favicon.ico", Status: 403}
	// Fields in another order, and fewer: found by name.
	short := "#Version: 1.0\n#Fields: sc-status cs-uri-query cs-uri-stem cs-method time date\n200\trmt=x\t/a.pdf\tGET\t09:30:05\t2026-11-26\n"

	for _, tt := range []struct {
		name    string
		file    []byte
		want    []accesslog.Entry
		skipped []string // "LINE: text"
		fileErr string
	}{
		{"gzipped", cflog.File(cflog.Request{Time: at, Path: "/u1/a.pdf", Query: want1.Query, Status: 200}, cflog.Request{Time: want2.Time, Path: "/favicon.ico", Status: 403}),
			[]accesslog.Entry{want1, want2}, nil, ""},
		{"plain text, CRLF", []byte(strings.ReplaceAll(header+good+"\n"+noQuery+"\n", "\n", "\r\n")), []accesslog.Entry{want1, want2}, nil, ""},
		{"fields by name", []byte(short), []accesslog.Entry{{Time: at, Method: "GET", URIStem: "/a.pdf", Query: "rmt=x", Status: 200}}, nil, ""},
		{"header only", []byte(header), nil, nil, ""},
		{"a truncated line is skipped", []byte(header + good + "\n" + good[:40] + "\n" + noQuery + "\n"), []accesslog.Entry{want1, want2},
			[]string{"4: 5 tab-separated fields, want 33"}, ""},
		{"a bad date", []byte(header + strings.Replace(good, "2026-11-26", "26/11/2026", 1) + "\n"), nil,
			[]string{`3: date and time "26/11/2026" "09:30:05": want YYYY-MM-DD HH:MM:SS`}, ""},
		{"a bad status", []byte(header + strings.Replace(good, "\t200\t", "\tOK\t", 1) + "\n"), nil,
			[]string{`3: sc-status "OK" is not an HTTP status`}, ""},
		{"no version", []byte("#Fields: " + cflog.Fields + "\n" + good + "\n"), nil, nil,
			`f.gz:2: a log line before "#Version: 1.0"`},
		{"another version", []byte("#Version: 2.0\n"), nil, nil, `f.gz:1: log format version "2.0", want 1.0`},
		{"no fields line", []byte("#Version: 1.0\n" + good + "\n"), nil, nil, "f.gz:2: a log line before the #Fields line"},
		{"no query field", []byte("#Version: 1.0\n#Fields: date time cs-method cs-uri-stem sc-status\n"), nil, nil,
			"f.gz:2: the #Fields line has no cs-uri-query field"},
		{"empty", nil, nil, nil, `f.gz: no "#Version: 1.0" line`},
		{"bad gzip", []byte{0x1f, 0x8b, 0, 0}, nil, nil, "f.gz: "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got []accesslog.Entry
			res, err := accesslog.Read(bytes.NewReader(tt.file), "f.gz", func(e accesslog.Entry) { got = append(got, e) })
			if tt.fileErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.fileErr) {
					t.Fatalf("err = %v, want %q", err, tt.fileErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("entries\n%v\nwant\n%v", got, tt.want)
			}
			if res.Entries != len(tt.want) || res.Skipped != len(tt.skipped) {
				t.Errorf("result %+v: want %d entries, %d skipped", res, len(tt.want), len(tt.skipped))
			}
			for i, e := range res.Errors {
				if e.File != "f.gz" || fmt.Sprintf("%d: %v", e.Line, e.Err) != tt.skipped[i] {
					t.Errorf("skipped line %d: %v, want f.gz:%s", i, e, tt.skipped[i])
				}
			}
		})
	}
}

func TestReadBoundsLineErrors(t *testing.T) {
	text := "#Version: 1.0\n#Fields: " + cflog.Fields + "\n" + strings.Repeat("garbage\n", 25)
	res, err := accesslog.Read(strings.NewReader(text), "f", func(accesslog.Entry) {})
	if err != nil {
		t.Fatal(err)
	}
	if res.Skipped != 25 || len(res.Errors) != accesslog.MaxLineErrors || res.Errors[0].Line != 3 {
		t.Errorf("result: %d skipped, %d errors, first %v; want 25, %d, line 3", res.Skipped, len(res.Errors), res.Errors[0], accesslog.MaxLineErrors)
	}
}
