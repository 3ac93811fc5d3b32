// Command reportmailer-screenshot renders emails written by
// "reportmailer preview" in headless Chromium and saves what a desktop
// client and a phone show: for each NN-RECIPIENT.html, the PNGs
// NN-RECIPIENT.600.png, .375.png and .375-dark.png next to it.
//
// It is a binary of its own so that the production reportmailer, which
// runs in a distroless image with no browser, does not carry the
// DevTools client (chromedp and its protocol packages) for nothing.
//
//	reportmailer preview -config FILE -event FILE -out DIR
//	reportmailer-screenshot DIR
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/reportmailer/reportmailer/templates/browser"
)

// Exit codes, as reportmailer's.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// views are the screenshots taken of each page; screenshots prints
// their suffixes in this order.
var views = []struct {
	suffix string
	vp     browser.Viewport
}{
	{".600.png", browser.Viewport{Width: 600}},
	{".375.png", browser.Viewport{Width: 375, Mobile: true}},
	{".375-dark.png", browser.Viewport{Width: 375, Mobile: true, Dark: true}},
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("reportmailer-screenshot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: reportmailer-screenshot [-chromium PATH] DIR_OR_HTML_FILE...

Writes NAME.600.png, NAME.375.png and NAME.375-dark.png next to each
NAME.html given, or each *.html in a directory given: the email as a
600 px desktop client and a 375 px phone (light and dark) show it.
Use it on the -out directory of "reportmailer preview".

Flags:
`)
		fs.PrintDefaults()
	}
	chromium := fs.String("chromium", browser.DefaultPath, "Chromium binary (Debian: apt-get install chromium)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "reportmailer-screenshot: give the directory reportmailer preview wrote (-out), or .html files")
		return exitUsage
	}
	pages, err := htmlFiles(fs.Args())
	if err != nil {
		fmt.Fprintf(stderr, "reportmailer-screenshot: %v\n", err)
		return exitUsage
	}
	if err := screenshots(ctx, *chromium, pages, stdout); err != nil {
		fmt.Fprintf(stderr, "reportmailer-screenshot: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// htmlFiles expands directories to the .html files in them, sorted,
// and checks that every other path names an .html file.
func htmlFiles(paths []string) ([]string, error) {
	var pages []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			if filepath.Ext(p) != ".html" {
				return nil, fmt.Errorf("%s: not an .html file", p)
			}
			pages = append(pages, p)
			continue
		}
		in, err := filepath.Glob(filepath.Join(p, "*.html"))
		if err != nil {
			return nil, err
		}
		if len(in) == 0 {
			return nil, fmt.Errorf("%s: no .html files (is it the -out directory of reportmailer preview?)", p)
		}
		slices.Sort(in)
		pages = append(pages, in...)
	}
	return pages, nil
}

// screenshots writes the PNGs of every page with one browser.
func screenshots(ctx context.Context, chromium string, pages []string, stdout io.Writer) error {
	b, err := browser.Start(ctx, chromium)
	if err != nil {
		return err
	}
	defer b.Close()
	for _, page := range pages {
		base := strings.TrimSuffix(page, ".html")
		for _, v := range views {
			p, err := b.OpenFile(page, v.vp)
			if err != nil {
				return err
			}
			png, err := p.Screenshot()
			p.Close()
			if err != nil {
				return fmt.Errorf("screenshot %s: %w", page, err)
			}
			if err := os.WriteFile(base+v.suffix, png, 0o644); err != nil {
				return err
			}
		}
		fmt.Fprintf(stdout, "  %s.{600,375,375-dark}.png\n", base)
	}
	return nil
}
