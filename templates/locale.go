package templates

import (
	"fmt"
	"strings"
	"time"
)

// FormatTime formats t, in t's location, the way locale (a BCP 47 tag)
// writes a date and time, with the time zone's abbreviation:
//
//	en, en-GB and other English   12 December 2026, 09:00 GMT
//	en-US                          December 12, 2026, 9:00 AM EST
//	de                             12. Dezember 2026, 09:00 CET
//	fr                             12 décembre 2026, 09:00 CET
//	es                             12 de diciembre de 2026, 09:00 CET
//	pt, pt-BR                      12 de dezembro de 2026, 09:00 UTC-3
//
// A locale is matched on its full tag, then on its language; anything
// else, and "", gets the first (English) form. A zone whose database
// entry has no abbreviation (America/Sao_Paulo's is "-03") is shown as
// an offset from UTC.
func FormatTime(t time.Time, locale string) string {
	f := dateFormats[""]
	tag := strings.ToLower(locale)
	if v, ok := dateFormats[tag]; ok {
		f = v
	} else if lang, _, _ := strings.Cut(tag, "-"); lang != "" {
		if v, ok := dateFormats[lang]; ok {
			f = v
		}
	}
	return f(t) + " " + zoneName(t)
}

type dateFormat func(t time.Time) string

var dateFormats = map[string]dateFormat{
	"": func(t time.Time) string {
		return fmt.Sprintf("%d %s %d, %s", t.Day(), t.Month(), t.Year(), t.Format("15:04"))
	},
	"en-us": func(t time.Time) string {
		return fmt.Sprintf("%s %d, %d, %s", t.Month(), t.Day(), t.Year(), t.Format("3:04 PM"))
	},
	"de": func(t time.Time) string {
		return fmt.Sprintf("%d. %s %d, %s", t.Day(), monthsDE[t.Month()-1], t.Year(), t.Format("15:04"))
	},
	"fr": func(t time.Time) string {
		day := fmt.Sprint(t.Day())
		if t.Day() == 1 {
			day = "1er"
		}
		return fmt.Sprintf("%s %s %d, %s", day, monthsFR[t.Month()-1], t.Year(), t.Format("15:04"))
	},
	"es": func(t time.Time) string {
		return fmt.Sprintf("%d de %s de %d, %s", t.Day(), monthsES[t.Month()-1], t.Year(), t.Format("15:04"))
	},
	"pt": func(t time.Time) string {
		return fmt.Sprintf("%d de %s de %d, %s", t.Day(), monthsPT[t.Month()-1], t.Year(), t.Format("15:04"))
	},
	"pt-br": func(t time.Time) string {
		day := fmt.Sprint(t.Day())
		if t.Day() == 1 {
			day = "1º"
		}
		return fmt.Sprintf("%s de %s de %d, %s", day, monthsPT[t.Month()-1], t.Year(), t.Format("15:04"))
	},
}

var (
	monthsDE = [12]string{"Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober", "November", "Dezember"}
	monthsFR = [12]string{"janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre", "novembre", "décembre"}
	monthsES = [12]string{"enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre", "noviembre", "diciembre"}
	monthsPT = [12]string{"janeiro", "fevereiro", "março", "abril", "maio", "junho", "julho", "agosto", "setembro", "outubro", "novembro", "dezembro"}
)

// zoneName is t's time zone abbreviation, or "UTC+5:30" when the zone
// database gives only a number.
func zoneName(t time.Time) string {
	name, off := t.Zone()
	if name != "" && name[0] != '+' && name[0] != '-' {
		return name
	}
	if off == 0 {
		return "UTC"
	}
	sign := "+"
	if off < 0 {
		sign, off = "-", -off
	}
	if m := off % 3600 / 60; m != 0 {
		return fmt.Sprintf("UTC%s%d:%02d", sign, off/3600, m)
	}
	return fmt.Sprintf("UTC%s%d", sign, off/3600)
}
