package event_test

import (
	"testing"

	"github.com/reportmailer/reportmailer/worker/event"
)

func BenchmarkDecode(b *testing.B) {
	bodies := map[string]string{
		"native": `{"version":1,"type":"report.ready","id":"evt-1","user":{"id":"u-42","email":"ana@example.com","name":"Ana Lima","locale":"pt-BR","time_zone":"America/Sao_Paulo"},"recipients":["cfo@example.com"],"reports":[{"bucket":"acme-reports","key":"2026/11/Q3 results+notes.pdf","title":"Q3 results","type":"finance","size":48213,"content_type":"application/pdf"}]}`,
		"s3":     `{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Put","eventTime":"2026-11-26T07:00:00.000Z","s3":{"bucket":{"name":"acme-reports"},"object":{"key":"2026/11/Q3+results%2Bnotes.pdf","size":1,"eTag":"e","sequencer":"0055AED6DCD90281E5"}}}]}`,
	}
	for name, body := range bodies {
		b.Run(name, func(b *testing.B) {
			in := []byte(body)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := event.Decode(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
