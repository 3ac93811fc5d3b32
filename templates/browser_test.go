package templates_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/reportmailer/reportmailer/templates"
	"github.com/reportmailer/reportmailer/templates/browser"
)

var shots = flag.String("shots", "", "also write the browser test's screenshots to this directory")

// layout is what the page tells about itself; see inspectJS.
type layout struct {
	ScrollWidth int `json:"scrollWidth"`
	ClientWidth int `json:"clientWidth"`
	CardWidth   float64
	Scripts     int
	Text        string
	Links       []struct {
		Href, Text    string
		Width, Height float64
		Left, Right   float64
		Hidden, OnTop bool
	}
	LowContrast []struct {
		Text, Color, Background string
		Ratio                   float64
	}
}

// inspectJS measures the page: its scroll width, every link's box,
// visibility and whether it is the topmost element at its own centre,
// and every visible text whose contrast with its background is under
// WCAG AA's 4.5:1.
const inspectJS = `(() => {
  const rgba = s => { const m = s.match(/rgba?\(([^)]+)\)/); if (!m) return null; const p = m[1].split(/[ ,\/]+/).filter(Boolean).map(Number); return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1}; };
  const lum = c => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }; return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b); };
  const hidden = el => { for (let e = el; e; e = e.parentElement) { const s = getComputedStyle(e); if (s.display === 'none' || s.visibility === 'hidden' || parseFloat(s.opacity) === 0) return true; } return false; };
  const background = el => { for (let e = el; e; e = e.parentElement) { const c = rgba(getComputedStyle(e).backgroundColor); if (c && c.a > 0) return c; } return matchMedia('(prefers-color-scheme: dark)').matches ? {r: 18, g: 18, b: 18, a: 1} : {r: 255, g: 255, b: 255, a: 1}; };
  const out = {scrollWidth: document.documentElement.scrollWidth, clientWidth: document.documentElement.clientWidth,
    cardWidth: 0, scripts: document.querySelectorAll('script').length, text: document.body.innerText, links: [], lowContrast: []};
  const card = document.querySelector('.rm-card');
  if (card) out.cardWidth = card.getBoundingClientRect().width;
  for (const a of document.querySelectorAll('a')) {
    a.scrollIntoView({block: 'center', inline: 'nearest'});
    const r = a.getBoundingClientRect(), box = a.getClientRects()[0];
    const hit = box ? document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2) : null;
    out.links.push({href: a.getAttribute('href'), text: a.innerText, width: r.width, height: r.height, left: r.left, right: r.right,
      hidden: hidden(a), onTop: !!hit && (hit === a || a.contains(hit))});
  }
  window.scrollTo(0, 0);
  for (const el of document.body.querySelectorAll('*')) {
    const own = Array.from(el.childNodes).filter(n => n.nodeType === 3).map(n => n.textContent).join('').trim();
    if (!own || hidden(el) || el.getBoundingClientRect().width === 0) continue;
    const fg = rgba(getComputedStyle(el).color), bg = background(el);
    const l1 = lum(fg), l2 = lum(bg), ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
    if (ratio < 4.5) out.lowContrast.push({text: own.slice(0, 40), color: getComputedStyle(el).color, background: JSON.stringify(bg), ratio});
  }
  return out;
})()`

// TestBrowser renders the default templates for the fixed event set in
// headless Chromium, as a phone (375 px) and as a desktop client
// (600 px), light and dark, and checks what a reader would see.
func TestBrowser(t *testing.T) {
	b, err := browser.Start(context.Background(), "")
	if errors.Is(err, browser.ErrNoChromium) {
		t.Fatalf("%v: the browser tests need it; `make test` installs Debian's chromium when /usr/bin/chromium is missing", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if *shots != "" {
		if err := os.MkdirAll(*shots, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	sets := templates.DefaultSets()
	for _, f := range fixtures() {
		m, err := sets.For("").Render(f.data)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []browser.Viewport{
			{Width: 375, Mobile: true}, {Width: 375, Mobile: true, Dark: true},
			{Width: 600}, {Width: 600, Dark: true},
		} {
			name := fmt.Sprintf("%s/%d", f.name, v.Width)
			if v.Dark {
				name += "-dark"
			}
			t.Run(name, func(t *testing.T) {
				p, err := b.Open(m.HTML, v)
				if err != nil {
					t.Fatal(err)
				}
				defer p.Close()
				var got layout
				if err := p.Eval(inspectJS, &got); err != nil {
					t.Fatal(err)
				}
				checkLayout(t, f.data, v, got)
				if *shots != "" {
					png, err := p.Screenshot()
					if err != nil {
						t.Fatal(err)
					}
					os.WriteFile(filepath.Join(*shots, strings.ReplaceAll(name, "/", "-")+".png"), png, 0o644)
				}
			})
		}
	}
}

func checkLayout(t *testing.T, d templates.Data, v browser.Viewport, got layout) {
	t.Helper()
	if got.ClientWidth != v.Width {
		t.Fatalf("the page is laid out %d px wide in a %d px viewport", got.ClientWidth, v.Width)
	}
	if got.ScrollWidth > v.Width {
		t.Errorf("horizontal scroll: the page is %d px wide in a %d px viewport", got.ScrollWidth, v.Width)
	}
	if got.CardWidth == 0 || got.CardWidth > 560 {
		t.Errorf("the email is %.0f px wide, want at most 560", got.CardWidth)
	}
	if got.Scripts != 0 {
		t.Errorf("the page holds %d <script> elements", got.Scripts)
	}
	if len(got.Links) != len(d.Links) {
		t.Fatalf("the page has %d links, want one per report (%d)", len(got.Links), len(d.Links))
	}
	for i, l := range got.Links {
		want := d.Links[i]
		if l.Href != want.URL {
			t.Errorf("link %d points at %q, want the signed URL %q", i+1, l.Href, want.URL)
		}
		if l.Text != want.Title {
			t.Errorf("link %d reads %q, want the title %q as text", i+1, l.Text, want.Title)
		}
		if l.Hidden || l.Width < 1 || l.Height < 1 || !l.OnTop || l.Left < 0 || l.Right > float64(v.Width) {
			t.Errorf("link %d (%q) is not visible: %+v", i+1, l.Text, l)
		}
		if !strings.Contains(got.Text, "Link "+want.ExpiresText) {
			t.Errorf("the page does not say %q", "Link "+want.ExpiresText)
		}
	}
	soon := 0
	for _, l := range d.Links {
		if l.ExpiresSoon {
			soon++
		}
	}
	if n := strings.Count(got.Text, "expires in less than 24 hours"); n != soon {
		t.Errorf("the under-24-hours note shows %d times, want %d", n, soon)
	}
	for _, c := range got.LowContrast {
		t.Errorf("text %q is hard to read: %s on %s, contrast %.2f:1 (want at least 4.5:1)", c.Text, c.Color, c.Background, c.Ratio)
	}
}
