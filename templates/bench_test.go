package templates_test

import (
	"testing"

	"github.com/reportmailer/reportmailer/templates"
)

func BenchmarkRender(b *testing.B) {
	set := templates.Default()
	data := templates.Sample()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := set.Render(data); err != nil {
			b.Fatal(err)
		}
	}
}
