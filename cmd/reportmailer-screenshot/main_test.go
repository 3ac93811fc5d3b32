package main

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/templates"
)

// TestScreenshots renders the default templates' samples as preview
// writes them, and checks that every page gets its three PNGs at the
// right widths, tall enough to hold an email.
func TestScreenshots(t *testing.T) {
	dir := t.TempDir()
	var bases []string
	for i, d := range templates.Samples()[:2] {
		msg, err := templates.Default().Render(d)
		if err != nil {
			t.Fatal(err)
		}
		base := fmt.Sprintf("%02d-%s", i+1, d.Recipient)
		if err := os.WriteFile(filepath.Join(dir, base+".html"), []byte(msg.HTML), 0o644); err != nil {
			t.Fatal(err)
		}
		bases = append(bases, base)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if code := run(ctx, []string{dir}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d (the browser tests need Debian's chromium; `make test` installs it)\n%s%s", code, &stdout, &stderr)
	}
	for _, base := range bases {
		if !strings.Contains(stdout.String(), filepath.Join(dir, base)+".{600,375,375-dark}.png\n") {
			t.Errorf("stdout does not list %s's screenshots:\n%s", base, &stdout)
		}
		for suffix, width := range map[string]int{".600.png": 600, ".375.png": 375, ".375-dark.png": 375} {
			f, err := os.Open(filepath.Join(dir, base+suffix))
			if err != nil {
				t.Error(err)
				continue
			}
			cfg, err := png.DecodeConfig(f)
			f.Close()
			if err != nil || cfg.Width != width || cfg.Height < 300 {
				t.Errorf("%s%s: %dx%d, %v; want a PNG %d px wide", base, suffix, cfg.Width, cfg.Height, err, width)
			}
		}
	}
}

func TestUsage(t *testing.T) {
	dir := t.TempDir()
	empty := t.TempDir()
	txt := filepath.Join(dir, "01-ana@example.com.txt")
	os.WriteFile(txt, []byte("text"), 0o644)
	html := filepath.Join(dir, "01-ana@example.com.html")
	os.WriteFile(html, []byte("<p>hi</p>"), 0o644)
	missing := filepath.Join(dir, "no-chromium")
	for _, tt := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no arguments", nil, exitUsage, "give the directory reportmailer preview wrote"},
		{"not html", []string{txt}, exitUsage, txt + ": not an .html file"},
		{"empty directory", []string{empty}, exitUsage, empty + ": no .html files"},
		{"no such path", []string{filepath.Join(dir, "nope")}, exitUsage, "no such file"},
		{"no chromium", []string{"-chromium", missing, html}, exitFailure, "chromium is not installed at " + missing + " (on Debian: apt-get install chromium)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, &stdout, &stderr)
			if code != tt.code || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d and %q", code, &stderr, tt.code, tt.want)
			}
		})
	}
}
