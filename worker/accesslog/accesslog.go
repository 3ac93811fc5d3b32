// Package accesslog reads CloudFront standard log files (the legacy
// standard logging, format version 1.0): W3C extended log files, gzipped,
// that begin with "#Version: 1.0" and a "#Fields:" line naming the
// tab-separated fields of every line after them.
//
// Fields are found by the names the #Fields line gives, not by
// position, so a file with fewer or more fields than today's 33 reads
// the same. A file whose header is missing or lacks a field this
// package needs is an error naming the file. A data line that cannot
// be read (wrong number of fields, a bad date, time or status) is
// counted and skipped, and the first few are returned as [LineError]s
// naming the file and the line: CloudFront writes these files, so one
// damaged line should not hide a week of downloads, and the caller
// still learns that the count may be short.
package accesslog

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Entry is one request as a log line records it.
type Entry struct {
	// Time is when the edge finished the response (date and time, UTC).
	Time time.Time
	// Method is cs-method, e.g. GET.
	Method string
	// URIStem is cs-uri-stem: the path, as logged.
	URIStem string
	// Query is cs-uri-query: the query string without "?", or "" when
	// the log has "-".
	Query string
	// Status is sc-status, e.g. 200; 0 when the viewer closed the
	// connection before the response (logged as "000").
	Status int
}

// LineError is a data line that could not be read.
type LineError struct {
	File string
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }

// Result says what Read read of one file.
type Result struct {
	// Entries is how many lines were read into entries.
	Entries int
	// Skipped is how many data lines could not be read.
	Skipped int
	// Errors are the first MaxLineErrors of them.
	Errors []*LineError
}

// MaxLineErrors bounds Result.Errors.
const MaxLineErrors = 10

// MaxSize bounds what Read reads of one file once decompressed: a gzip
// file a few MB long can inflate without bound. CloudFront's hourly
// files are far smaller.
const MaxSize = 1 << 30

// ErrTooLarge is Read's error for a file larger than MaxSize
// decompressed.
var ErrTooLarge = fmt.Errorf("larger than %d bytes decompressed", MaxSize)

// capped reads at most n bytes of r, then fails with ErrTooLarge
// rather than ending the file early.
type capped struct {
	r io.Reader
	n int64
}

func (c *capped) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, ErrTooLarge
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	n, err := c.r.Read(p)
	c.n -= int64(n)
	return n, err
}

// The fields Read needs.
var required = []string{"date", "time", "cs-method", "cs-uri-stem", "sc-status", "cs-uri-query"}

// Read reads one log file from r, gzipped or not (by its first bytes),
// and calls fn for each entry in order. name is the file's name for
// errors. It returns an error for a file it cannot read at all: not
// gzip when it says so, no "#Version: 1.0" before the data, no
// "#Fields:" line, a needed field missing from it, or more than MaxSize
// bytes once decompressed (ErrTooLarge, after the entries before it).
func Read(r io.Reader, name string, fn func(Entry)) (Result, error) {
	return read(r, name, MaxSize, fn)
}

// read is Read with the bound on the decompressed size a parameter.
func read(r io.Reader, name string, max int64, fn func(Entry)) (Result, error) {
	var res Result
	br := bufio.NewReader(r)
	var body io.Reader = br
	if magic, _ := br.Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return res, fmt.Errorf("%s: %w", name, err)
		}
		defer zr.Close()
		body = zr
	}
	sc := bufio.NewScanner(&capped{r: body, n: max})
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var (
		version string
		index   map[string]int
		nfields int
		line    int
	)
	skip := func(err error) {
		res.Skipped++
		if len(res.Errors) < MaxLineErrors {
			res.Errors = append(res.Errors, &LineError{File: name, Line: line, Err: err})
		}
	}
	for sc.Scan() {
		line++
		text := strings.TrimSuffix(sc.Text(), "\r")
		if text == "" {
			continue
		}
		if rest, ok := strings.CutPrefix(text, "#"); ok {
			key, val, _ := strings.Cut(rest, ":")
			val = strings.TrimSpace(val)
			switch key {
			case "Version":
				if val != "1.0" {
					return res, fmt.Errorf("%s:%d: log format version %q, want 1.0 (CloudFront standard logs)", name, line, val)
				}
				version = val
			case "Fields":
				names := strings.Fields(val)
				index = make(map[string]int, len(names))
				for i, n := range names {
					index[n] = i
				}
				for _, n := range required {
					if _, ok := index[n]; !ok {
						return res, fmt.Errorf("%s:%d: the #Fields line has no %s field", name, line, n)
					}
				}
				nfields = len(names)
			}
			continue
		}
		if version == "" {
			return res, fmt.Errorf("%s:%d: a log line before \"#Version: 1.0\": not a CloudFront standard log file", name, line)
		}
		if index == nil {
			return res, fmt.Errorf("%s:%d: a log line before the #Fields line", name, line)
		}
		f := strings.Split(text, "\t")
		if len(f) != nfields {
			skip(fmt.Errorf("%d tab-separated fields, want %d", len(f), nfields))
			continue
		}
		e, err := entry(f, index)
		if err != nil {
			skip(err)
			continue
		}
		res.Entries++
		fn(e)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return res, fmt.Errorf("%s:%d: a line longer than 1 MiB", name, line+1)
		}
		return res, fmt.Errorf("%s: %w", name, err)
	}
	if version == "" {
		return res, fmt.Errorf("%s: no \"#Version: 1.0\" line: not a CloudFront standard log file", name)
	}
	return res, nil
}

// entry reads the needed fields of one line.
func entry(f []string, index map[string]int) (Entry, error) {
	get := func(n string) string { return f[index[n]] }
	t, err := time.Parse("2006-01-02 15:04:05", get("date")+" "+get("time"))
	if err != nil {
		return Entry{}, fmt.Errorf("date and time %q %q: want YYYY-MM-DD HH:MM:SS", get("date"), get("time"))
	}
	status, err := strconv.Atoi(get("sc-status"))
	if err != nil || status < 0 || status > 999 {
		return Entry{}, fmt.Errorf("sc-status %q is not an HTTP status", get("sc-status"))
	}
	q := get("cs-uri-query")
	if q == "-" {
		q = ""
	}
	return Entry{Time: t.UTC(), Method: get("cs-method"), URIStem: get("cs-uri-stem"), Query: q, Status: status}, nil
}
