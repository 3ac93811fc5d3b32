package accesslog

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/internal/cflog"
)

// TestReadBoundsDecompressedSize: the bound applies to the file once
// gunzipped, so a small gzip file that inflates past it is refused
// with ErrTooLarge, not read without end; one under it is read whole.
func TestReadBoundsDecompressedSize(t *testing.T) {
	at := time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC)
	reqs := make([]cflog.Request, 200)
	for i := range reqs {
		reqs[i] = cflog.Request{Time: at, Path: "/u1/a.pdf", Status: 200}
	}
	gz := cflog.File(reqs...)
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	text, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	plain := len(text)
	for _, tt := range []struct {
		max     int64
		wantErr bool
	}{
		{int64(plain), false},
		{int64(plain) - 1, true},
		{int64(len(gz)), true}, // the compressed size: too small for what it inflates to
	} {
		n := 0
		_, err := read(bytes.NewReader(gz), "f.gz", tt.max, func(Entry) { n++ })
		if tt.wantErr != errors.Is(err, ErrTooLarge) {
			t.Errorf("bound %d on a file of %d bytes gzipped, %d gunzipped: err %v", tt.max, len(gz), plain, err)
		}
		if !tt.wantErr && n != len(reqs) {
			t.Errorf("bound %d: %d entries, want %d", tt.max, n, len(reqs))
		}
	}
}
