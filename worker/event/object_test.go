package event

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestFromObject(t *testing.T) {
	tests := []struct {
		name        string
		ref         ObjectRef
		size        int64
		contentType string
		meta        map[string]string
		want        Event
	}{
		{
			name:        "all metadata",
			ref:         s3Ref,
			size:        48213,
			contentType: "application/pdf",
			meta: map[string]string{
				"user-id":       "u-42",
				"user-email":    "ana@example.com",
				"user-name":     "=?UTF-8?b?QW5hIEzDumNpYQ==?=",
				"user-locale":   "pt-BR",
				"user-timezone": "America/Sao_Paulo",
				"recipients":    "cfo@example.com, ceo@example.com,",
				"title":         "=?UTF-8?q?Relat=C3=B3rio_do_3=C2=BA_trimestre?=",
				"report-type":   "finance",
				"unrelated":     "ignored",
			},
			want: Event{
				ID: "s3:acme-reports/2026/11/Q3 results+notes.pdf@0067A1B2C3D4E5F601",
				User: User{
					ID:       "u-42",
					Email:    "ana@example.com",
					Name:     "Ana Lúcia",
					Locale:   "pt-BR",
					TimeZone: "America/Sao_Paulo",
				},
				Recipients: []string{"cfo@example.com", "ceo@example.com"},
				Reports: []Report{{
					Bucket:      "acme-reports",
					Key:         "2026/11/Q3 results+notes.pdf",
					Title:       "Relatório do 3º trimestre",
					Type:        "finance",
					Size:        48213,
					ContentType: "application/pdf",
				}},
			},
		},
		{
			name: "only user-email",
			ref:  ObjectRef{Bucket: "acme-reports", Key: "2026/11/日.pdf", ETag: "abc"},
			size: 7,
			meta: map[string]string{"user-email": "ana@example.com"},
			want: Event{
				ID:   "s3:acme-reports/2026/11/日.pdf@abc",
				User: User{ID: "ana@example.com", Email: "ana@example.com"},
				Reports: []Report{{
					Bucket: "acme-reports",
					Key:    "2026/11/日.pdf",
					Title:  "日.pdf",
					Size:   7,
				}},
			},
		},
		{
			name: "other key spellings and spaces",
			ref:  ObjectRef{Bucket: "acme-reports", Key: "r.csv", Sequencer: "01", ETag: "abc"},
			meta: map[string]string{
				"X-Amz-Meta-User-Email": " ana@example.com ",
				"User-Name":             "Ana",
				"user-name":             "Ana Lima", // the canonical spelling wins
				"TITLE":                 "Plain title",
			},
			want: Event{
				ID:   "s3:acme-reports/r.csv@01",
				User: User{ID: "ana@example.com", Email: "ana@example.com", Name: "Ana Lima"},
				Reports: []Report{{
					Bucket: "acme-reports",
					Key:    "r.csv",
					Title:  "Plain title",
				}},
			},
		},
		{
			name: "invalid recipients kept for the policy step",
			ref:  ObjectRef{Bucket: "acme-reports", Key: "r.csv", Sequencer: "01"},
			meta: map[string]string{"user-email": "ana@example.com", "recipients": "bob@@x,  ,cfo@example.com"},
			want: Event{
				ID:         "s3:acme-reports/r.csv@01",
				User:       User{ID: "ana@example.com", Email: "ana@example.com"},
				Recipients: []string{"bob@@x", "cfo@example.com"},
				Reports:    []Report{{Bucket: "acme-reports", Key: "r.csv", Title: "r.csv"}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromObject(tt.ref, tt.size, tt.contentType, tt.meta)
			if err != nil {
				t.Fatalf("FromObject: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("FromObject:\n got %+v\nwant %+v", got, tt.want)
			}
			if err := checkEvent(got); err != nil {
				t.Errorf("event breaks an invariant: %v", err)
			}
		})
	}
}

// TestFromObjectID checks that the id tells redeliveries (same id) from
// new uploads of the same key (new id).
func TestFromObjectID(t *testing.T) {
	meta := map[string]string{"user-email": "ana@example.com"}
	id := func(body string) string {
		t.Helper()
		d, err := Decode([]byte(body))
		if err != nil || len(d.Objects) != 1 {
			t.Fatalf("Decode: %+v, %v", d, err)
		}
		e, err := FromObject(d.Objects[0], 1, "", meta)
		if err != nil {
			t.Fatalf("FromObject: %v", err)
		}
		return e.ID
	}
	first := id(s3Body)
	if again := id(s3Body); again != first {
		t.Errorf("redelivery: id %q, first %q", again, first)
	}
	if viaSNS := id(sns(s3Body)); viaSNS != first {
		t.Errorf("through SNS: id %q, direct %q", viaSNS, first)
	}
	reupload := record(t, "2026/11/Q3+results%2Bnotes.pdf", func(_, obj map[string]any) { obj["sequencer"] = "0067A1B2C3D4E5F699" })
	if next := id(reupload); next == first {
		t.Errorf("new upload of the same key kept id %q", next)
	}
	// Without a sequencer the eTag stands in: same content, same id.
	noSeq := record(t, "k", func(_, obj map[string]any) { delete(obj, "sequencer") })
	if got, want := id(noSeq), "s3:acme-reports/k@9b2cf535f27731c974343645a3985328"; got != want {
		t.Errorf("id without sequencer = %q, want %q", got, want)
	}
}

func TestFromObjectInvalid(t *testing.T) {
	ref := ObjectRef{Bucket: "acme-reports", Key: "r.csv", Sequencer: "01"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{"user-email": "ana@example.com"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name        string
		ref         ObjectRef
		size        int64
		contentType string
		meta        map[string]string
		field       string
		value       string
	}{
		{name: "no metadata", ref: ref, meta: nil, field: "metadata user-email"},
		{name: "user-email empty", ref: ref, meta: with("user-email", ""), field: "metadata user-email"},
		{name: "user-email invalid", ref: ref, meta: with("user-email", "bob@@x"), field: "metadata user-email", value: "bob@@x"},
		{name: "user-email display name", ref: ref, meta: with("user-email", "Ana <ana@example.com>"), field: "metadata user-email", value: "Ana <ana@example.com>"},
		{name: "user-email non-ASCII local part", ref: ref, meta: with("user-email", "zoë@example.com"), field: "metadata user-email", value: "zoë@example.com"},
		{name: "user-id control", ref: ref, meta: with("user-id", "u\x01"), field: "metadata user-id", value: "u\x01"},
		{name: "user-name decodes to a newline", ref: ref, meta: with("user-name", "=?UTF-8?Q?Ana=0ABcc:_x?="), field: "metadata user-name", value: "Ana\nBcc: x"},
		{name: "user-name unknown charset", ref: ref, meta: with("user-name", "=?x-klingon?Q?Ana?="), field: "metadata user-name", value: "=?x-klingon?Q?Ana?="},
		{name: "user-locale invalid", ref: ref, meta: with("user-locale", "pt_BR"), field: "metadata user-locale", value: "pt_BR"},
		{name: "user-timezone invalid", ref: ref, meta: with("user-timezone", "Europe/Atlantis"), field: "metadata user-timezone", value: "Europe/Atlantis"},
		{name: "title too long", ref: ref, meta: with("title", strings.Repeat("t", 1025)), field: "metadata title", value: strings.Repeat("t", 100)},
		{name: "report-type control", ref: ref, meta: with("report-type", "=?UTF-8?Q?a=00?="), field: "metadata report-type", value: "a\x00"},
		{name: "bucket invalid", ref: ObjectRef{Bucket: "A", Key: "k", ETag: "1"}, meta: with(), field: "object bucket", value: "A"},
		{name: "key empty", ref: ObjectRef{Bucket: "acme-reports", ETag: "1"}, meta: with(), field: "object key"},
		{name: "key control", ref: ObjectRef{Bucket: "acme-reports", Key: "a\nb", ETag: "1"}, meta: with(), field: "object key", value: "a\nb"},
		{name: "no sequencer or eTag", ref: ObjectRef{Bucket: "acme-reports", Key: "k"}, meta: with(), field: "object sequencer"},
		{name: "size negative", ref: ref, size: -1, meta: with(), field: "object size"},
		{name: "content type control", ref: ref, contentType: "text/plain\x00", meta: with(), field: "object content type", value: "text/plain\x00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromObject(tt.ref, tt.size, tt.contentType, tt.meta)
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("FromObject: got %v (%T), want a *FieldError", err, err)
			}
			if !reflect.DeepEqual(got, Event{}) {
				t.Errorf("FromObject returned %+v with an error", got)
			}
			if fe.Field != tt.field {
				t.Errorf("Field = %q, want %q (error %q)", fe.Field, tt.field, err)
			}
			if tt.value != "" && !strings.Contains(fe.Value, tt.value) {
				t.Errorf("Value = %q, want it to hold %q", fe.Value, tt.value)
			}
		})
	}
}

func TestValidAddress(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"ana@example.com", true},
		{"ana.lima+reports@mail.example.co.uk", true},
		{"a@b", true},
		{"", false},
		{"ana", false},
		{"bob@@x", false},
		{"@example.com", false},
		{"ana@", false},
		{"Ana <ana@example.com>", false},
		{"<ana@example.com>", false},
		{"ana@example.com (Ana)", false},
		{"ana@example.com, bob@example.com", false},
		{" ana@example.com", false},
		{"ana@example.com\n", false},
		{"ana@example.com\r\nBcc: eve@example.com", false},
		{`"ana lima"@example.com`, false},
		{strings.Repeat("a", 64) + "@" + strings.Repeat("b", 190) + ".com", false},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			if got := ValidAddress(tt.addr); got != tt.want {
				t.Errorf("ValidAddress(%q) = %v, want %v", tt.addr, got, tt.want)
			}
		})
	}
}

func TestASCIIAddress(t *testing.T) {
	tests := []struct {
		addr string
		want string // "" when refused
		why  string // part of the refusal
	}{
		{"ana@example.com", "ana@example.com", ""},
		{"Ana.Lima@Example.COM", "Ana.Lima@Example.COM", ""}, // ASCII goes as it is
		{"user@bücher.example", "user@xn--bcher-kva.example", ""},
		{"user@BÜCHER.Example", "user@xn--bcher-kva.example", ""},
		{"User@Bücher.EXAMPLE", "User@xn--bcher-kva.example", ""}, // the local part keeps its case
		{"user@XN--BCHER-KVA.example", "user@xn--bcher-kva.example", ""},
		{"user@mañana.com", "user@xn--maana-pta.com", ""},
		{"zoë@example.com", "", `local part "zoë" is not ASCII`},
		{"zoë@bücher.example", "", "SMTPUTF8"},
		{"ana@bücher-.example", "", `domain "bücher-.example" is not a valid internationalized domain name`},
		{"ana@a\u200db.example", "", "not a valid internationalized domain name"},
		{"ana@xn--zz.example", "", `domain "xn--zz.example" is not a valid`},
		{"ana@" + strings.Repeat("üa", 30) + ".example", "", "label of 67 bytes"},
		{"a@" + strings.Repeat("ü"+strings.Repeat("c", 55)+".", 3) + "ü" + strings.Repeat("c", 55), "", "is 257 bytes once its domain is in ASCII form"},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			if !ValidAddress(tt.addr) {
				t.Fatalf("ValidAddress(%q) = false; the case is meant to be valid syntax", tt.addr)
			}
			got, err := ASCIIAddress(tt.addr)
			switch {
			case tt.want != "" && (err != nil || got != tt.want):
				t.Errorf("ASCIIAddress = %q, %v; want %q", got, err, tt.want)
			case tt.want == "" && (err == nil || !strings.Contains(err.Error(), tt.why)):
				t.Errorf("ASCIIAddress = %q, %v; want an error saying %q", got, err, tt.why)
			}
		})
	}
}

func TestValidLocale(t *testing.T) {
	tests := []struct {
		tag  string
		want bool
	}{
		{"en", true},
		{"pt-BR", true},
		{"zh-Hant-TW", true},
		{"es-419", true},
		{"de-CH-1901", true},
		{"x-klingon", true},
		{"en-US-x-twain", true},
		{"", false},
		{"e", false},
		{"pt_BR", false},
		{"pt-", false},
		{"-BR", false},
		{"419", false},
		{"pt BR", false},
		{"en-" + strings.Repeat("a", 9), false},
		{"en-" + strings.Repeat("abcdefgh-", 4), false},
	}
	for _, tt := range tests {
		t.Run(tt.tag, func(t *testing.T) {
			if got := validLocale(tt.tag); got != tt.want {
				t.Errorf("validLocale(%q) = %v, want %v", tt.tag, got, tt.want)
			}
		})
	}
}

func TestValidTimeZone(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"UTC", true},
		{"Europe/London", true},
		{"America/Sao_Paulo", true},
		{"America/Argentina/Buenos_Aires", true},
		{"Etc/GMT+3", true},
		{"", false},
		{"Local", false},
		{"Mars/Olympus_Mons", false},
		{"/etc/localtime", false},
		{"Europe/London/", false},
		{"../zoneinfo/UTC", false},
		{"Europe\\London", false},
		{"Europe/London\x00", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := validTimeZone(tt.name); got != tt.want {
				t.Errorf("validTimeZone(%q) = %v, want %v", tt.name, got, tt.want)
			}
		})
	}
}
