package templates

import (
	"fmt"
	"time"

	"golang.org/x/text/language"
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
// The locale is parsed and matched with golang.org/x/text/language, so
// "pt_BR" and "pt-Latn-BR" are Brazilian and "de-AT" is German. English
// is written the American way only for an explicit US region; anything
// not matched closely (or not a tag, or "") gets the first form. A zone
// whose database entry has no abbreviation (America/Sao_Paulo's is
// "-03") is shown as an offset from UTC.
func FormatTime(t time.Time, locale string) string {
	return dateFormatFor(locale)(t) + " " + zoneName(t)
}

type dateFormat func(t time.Time) string

// dateTags and dateForms go in step; the first is the default.
var (
	dateTags = []language.Tag{
		language.BritishEnglish, language.AmericanEnglish, language.German, language.French,
		language.Spanish, language.Portuguese, language.BrazilianPortuguese,
	}
	dateForms   = []dateFormat{dateEnglish, dateUS, dateDE, dateFR, dateES, datePT, datePTBR}
	dateMatcher = language.NewMatcher(dateTags)
)

func dateFormatFor(locale string) dateFormat {
	tag, err := language.Parse(locale)
	if err != nil {
		return dateEnglish
	}
	if base, _ := tag.Base(); base.String() == "en" {
		// The matcher would take a bare "en" for American English.
		if region, c := tag.Region(); c == language.Exact && region.String() == "US" {
			return dateUS
		}
		return dateEnglish
	}
	_, i, c := dateMatcher.Match(tag)
	if c < language.High { // another language, not a cousin of one we write
		return dateEnglish
	}
	return dateForms[i]
}

var (
	dateEnglish dateFormat = func(t time.Time) string {
		return fmt.Sprintf("%d %s %d, %s", t.Day(), t.Month(), t.Year(), t.Format("15:04"))
	}
	dateUS dateFormat = func(t time.Time) string {
		return fmt.Sprintf("%s %d, %d, %s", t.Month(), t.Day(), t.Year(), t.Format("3:04 PM"))
	}
	dateDE dateFormat = func(t time.Time) string {
		return fmt.Sprintf("%d. %s %d, %s", t.Day(), monthsDE[t.Month()-1], t.Year(), t.Format("15:04"))
	}
	dateFR dateFormat = func(t time.Time) string {
		day := fmt.Sprint(t.Day())
		if t.Day() == 1 {
			day = "1er"
		}
		return fmt.Sprintf("%s %s %d, %s", day, monthsFR[t.Month()-1], t.Year(), t.Format("15:04"))
	}
	dateES dateFormat = func(t time.Time) string {
		return fmt.Sprintf("%d de %s de %d, %s", t.Day(), monthsES[t.Month()-1], t.Year(), t.Format("15:04"))
	}
	datePT dateFormat = func(t time.Time) string {
		return fmt.Sprintf("%d de %s de %d, %s", t.Day(), monthsPT[t.Month()-1], t.Year(), t.Format("15:04"))
	}
	datePTBR dateFormat = func(t time.Time) string {
		day := fmt.Sprint(t.Day())
		if t.Day() == 1 {
			day = "1º"
		}
		return fmt.Sprintf("%s de %s de %d, %s", day, monthsPT[t.Month()-1], t.Year(), t.Format("15:04"))
	}
)

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
