package eml_test

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/templates/eml"
)

func parse(t *testing.T, b []byte) *mail.Message {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	return msg
}

func decode(t *testing.T, s string) string {
	t.Helper()
	var d mime.WordDecoder
	out, err := d.DecodeHeader(s)
	if err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
	return out
}

func message(subject string) eml.Message {
	return eml.Message{
		From: "Reports <reports@example.com>", To: []string{"ana@example.com"},
		Subject: subject, Text: "text", HTML: "<p>html</p>",
	}
}

// TestSubjectRoundTrips checks that every subject, once written and
// read back by a standard parser, decodes to exactly the UTF-8 it was.
func TestSubjectRoundTrips(t *testing.T) {
	for _, subject := range []string{
		"Your report is ready: Q3 results",
		"Your report is ready: Zoë Ångström-Łukasz",
		"📈 Umsätze März 📈",
		"日本語レポート 📈 and some more text so that the subject is longer than one encoded word can hold, twice over: 日本語レポート 📈 日本語レポート",
		"A plain ASCII subject that is much longer than seventy-eight characters, so that it has to be folded over lines",
		"Looks like a word: =?utf-8?q?x?= but is not",
		"=?utf-8?b?QW5h?=",
		"Ventes — décembre (final) 100%+?#",
		"x",
	} {
		b, err := eml.Encode(message(subject))
		if err != nil {
			t.Fatal(err)
		}
		raw := string(b[:bytes.Index(b, []byte("\r\n\r\n"))])
		for _, line := range strings.Split(raw, "\r\n") {
			// go-message folds at 76 where a space allows and otherwise
			// keeps to RFC 5322's hard limit; readers take both.
			if len(line) > 998 {
				t.Errorf("%q: header line of %d characters: %q", subject, len(line), line)
			}
			for _, c := range []byte(line) {
				if c >= 0x80 {
					t.Errorf("%q: header line not ASCII: %q", subject, line)
					break
				}
			}
		}
		if got := decode(t, parse(t, b).Header.Get("Subject")); got != subject {
			t.Errorf("subject %q came back as %q\n%s", subject, got, raw)
		}
	}
}

// TestLongSubjectHasNoLeadingSpace checks that a subject too long for
// one header line is folded between encoded words, never right after
// "Subject:", which some readers unfold into a leading space.
func TestLongSubjectHasNoLeadingSpace(t *testing.T) {
	for _, subject := range []string{
		"Ihr Bericht ist fertig: Umsätze März 2026 für die Niederlassung Köln-Süd und Düsseldorf",
		"年度报告已就绪：2026 年第四季度财务报表与附注（合并口径，含子公司明细）",
		"Relatórios_de_operação_consolidados_sem_espaços_para_dobrar_a_linha_em_nenhum_lugar",
	} {
		b, err := eml.Encode(message(subject))
		if err != nil {
			t.Fatal(err)
		}
		raw := string(b[:bytes.Index(b, []byte("\r\n\r\n"))])
		i := strings.Index(raw, "\r\nSubject:")
		if i < 0 {
			t.Fatalf("no Subject header:\n%s", raw)
		}
		if first := raw[i+2 : i+2+strings.Index(raw[i+2:], "\r\n")]; !strings.HasPrefix(first, "Subject: =?utf-8?") {
			t.Errorf("%q: the Subject field starts %q; want the first encoded word on the Subject line\n%s", subject, first, raw)
		}
		got := decode(t, parse(t, b).Header.Get("Subject"))
		if got != subject {
			t.Errorf("subject %q came back as %q\n%s", subject, got, raw)
		}
		if strings.HasPrefix(got, " ") {
			t.Errorf("subject %q came back with a leading space", subject)
		}
	}
}

func TestEncodeText(t *testing.T) {
	if got := eml.EncodeText("plain"); got != "plain" {
		t.Errorf("EncodeText(plain) = %q", got)
	}
	if got := eml.EncodeText("Zoë"); got != "=?utf-8?q?Zo=C3=AB?=" {
		t.Errorf("EncodeText(Zoë) = %q", got)
	}
	if got := decode(t, eml.EncodeText("bad \xff byte")); got != "bad \uFFFD byte" {
		t.Errorf("invalid UTF-8 came back as %q", got)
	}
}

func TestBodyAndAddresses(t *testing.T) {
	m := eml.Message{
		From:      "Zoë Reports <reports@example.com>",
		To:        []string{"ana@example.com", "Bo Berg <bo@example.com>"},
		ReplyTo:   []string{"help@example.com"},
		Subject:   "Hi",
		Date:      time.Date(2026, 12, 11, 9, 0, 0, 0, time.UTC),
		MessageID: "abc@example.com",
		Headers:   map[string]string{"List-Id": "Reports <reports.example.com>", "X-Note": "naïve"},
		Text:      "Hello Zoë,\nlines longer than seventy-six characters are soft-broken by quoted-printable, and =signs= stay.\n",
		HTML:      "<p>Hello Zoë, <a href=\"https://x.example/a?b=c&amp;d=e\">📈</a></p>",
	}
	b, err := eml.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	msg := parse(t, b)
	h := msg.Header
	from, err := h.AddressList("From")
	if err != nil || len(from) != 1 || from[0].Name != "Zoë Reports" || from[0].Address != "reports@example.com" {
		t.Errorf("From = %v, %v", from, err)
	}
	to, err := h.AddressList("To")
	if err != nil || len(to) != 2 || to[1].Address != "bo@example.com" {
		t.Errorf("To = %v, %v", to, err)
	}
	if h.Get("Message-ID") != "<abc@example.com>" || h.Get("Date") != "Fri, 11 Dec 2026 09:00:00 +0000" || h.Get("List-Id") != m.Headers["List-Id"] {
		t.Errorf("headers: %v", h)
	}
	if got := decode(t, h.Get("X-Note")); got != "naïve" {
		t.Errorf("X-Note = %q", got)
	}
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("Content-Type %q: %v", h.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for _, want := range []struct{ typ, body string }{{"text/plain; charset=utf-8", m.Text}, {"text/html; charset=utf-8", m.HTML}} {
		p, err := mr.NextPart() // decodes quoted-printable
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(p)
		body = bytes.ReplaceAll(body, []byte("\r\n"), []byte("\n")) // text parts travel with CRLF
		if p.Header.Get("Content-Type") != want.typ || string(body) != want.body {
			t.Errorf("part %q = %q, want %q %q", p.Header.Get("Content-Type"), body, want.typ, want.body)
		}
	}
	if _, err := mr.NextPart(); err != io.EOF {
		t.Errorf("a third part, or %v", err)
	}

	again, _ := eml.Encode(m)
	if !bytes.Equal(b, again) {
		t.Error("the same message encoded twice differs")
	}
}

func TestNothingAddsAHeader(t *testing.T) {
	for name, m := range map[string]eml.Message{
		"subject":      message("Hi\r\nBcc: victim@example.com"),
		"header value": {From: "a@example.com", To: []string{"b@example.com"}, Subject: "x", Headers: map[string]string{"X-A": "1\nBcc: victim@example.com"}},
		"header name":  {From: "a@example.com", To: []string{"b@example.com"}, Subject: "x", Headers: map[string]string{"X-A\r\nBcc": "1"}},
		"reserved":     {From: "a@example.com", To: []string{"b@example.com"}, Subject: "x", Headers: map[string]string{"bcc": "v@example.com", "content-type": "text/plain"}},
		"to":           {From: "a@example.com", To: []string{"b@example.com\r\nBcc: v@example.com"}, Subject: "x"},
		"message id":   {From: "a@example.com", To: []string{"b@example.com"}, Subject: "x", MessageID: "a>\r\nBcc: <v@example.com"},
	} {
		b, err := eml.Encode(m)
		if err != nil {
			continue
		}
		if strings.Contains(strings.ToLower(string(b)), "\r\nbcc:") || strings.Contains(strings.ToLower(string(b)), "\r\ncontent-type: text/plain\r\n") && name == "reserved" {
			t.Errorf("%s: a header was added:\n%s", name, b)
		}
	}
}

func TestRequiredFields(t *testing.T) {
	if _, err := eml.Encode(eml.Message{To: []string{"a@example.com"}}); err == nil {
		t.Error("no From should fail")
	}
	if _, err := eml.Encode(eml.Message{From: "a@example.com"}); err == nil {
		t.Error("no To should fail")
	}
	if _, err := eml.Encode(eml.Message{From: "not an address", To: []string{"a@example.com"}}); err == nil {
		t.Error("a bad From should fail")
	}
}
