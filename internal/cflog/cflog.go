// Package cflog writes CloudFront standard log files (legacy standard
// logging, format version 1.0) for tests: gzipped W3C files with the 33
// fields CloudFront documents, in its order, tab-separated, "-" for an
// empty value.
package cflog

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"strings"
	"time"
)

// Fields is the #Fields line of a CloudFront standard log file.
const Fields = "date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status cs(Referer) cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type x-edge-request-id x-host-header cs-protocol cs-bytes time-taken x-forwarded-for ssl-protocol ssl-cipher x-edge-response-result-type cs-protocol-version fle-status fle-encrypted-fields c-port time-to-first-byte x-edge-detailed-result-type sc-content-type sc-content-len sc-range-start sc-range-end"

// Request is one logged request.
type Request struct {
	Time   time.Time
	Method string // default GET
	Path   string // cs-uri-stem
	Query  string // cs-uri-query, without "?"; "" is logged as "-"
	Status int
}

// Line returns r as a log line, without the newline.
func Line(r Request) string {
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	method := r.Method
	if method == "" {
		method = "GET"
	}
	result := "Hit"
	if r.Status >= 400 {
		result = "Error"
	}
	t := r.Time.UTC()
	f := []string{
		t.Format("2006-01-02"), t.Format("15:04:05"), "FRA56-P1", "2048", "192.0.2.10", method,
		"d111111abcdef8.cloudfront.net", r.Path, fmt.Sprint(r.Status), "-", "Mozilla/5.0%20(X11;%20Linux%20x86_64)",
		dash(r.Query), "-", result, "b3JpZ2luYWwtcmVxdWVzdC1pZA==", "files.example.com", "https", "512", "0.012",
		"-", "TLSv1.3", "TLS_AES_128_GCM_SHA256", result, "HTTP/2.0", "-", "-", "50514", "0.010", result,
		"application/pdf", "1024", "-", "-",
	}
	return strings.Join(f, "\t")
}

// File returns a gzipped log file holding rs, with CloudFront's header.
func File(rs ...Request) []byte {
	var text strings.Builder
	text.WriteString("#Version: 1.0\n#Fields: " + Fields + "\n")
	for _, r := range rs {
		text.WriteString(Line(r) + "\n")
	}
	return Gzip(text.String())
}

// Gzip compresses text.
func Gzip(text string) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(text))
	zw.Close()
	return b.Bytes()
}
