package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/reportmailer/reportmailer/internal/s3test"
)

// BenchmarkS3CallTraced is the cost of tracing one AWS SDK call (an S3
// HeadObject against gofakes3 in this process): untraced, and traced
// as drain traces it, each span exported over OTLP/HTTP to a local
// receiver that drops it. The difference is the SDK side of what
// docs/benchmarks.md's "Observation overhead" measures end to end.
func BenchmarkS3CallTraced(b *testing.B) {
	_, c := s3test.Start(b, "bench")
	if _, err := c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("bench"), Key: aws.String("k"), Body: strings.NewReader("x")}); err != nil {
		b.Fatal(err)
	}
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
	defer rcv.Close()
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(rcv.URL+"/v1/traces"))
	if err != nil {
		b.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp))
	defer tp.Shutdown(context.Background())
	for _, bc := range []struct {
		name   string
		traced bool
	}{{"off", false}, {"on", true}} {
		b.Run(bc.name, func(b *testing.B) {
			opt := func(*s3.Options) {}
			ctx := context.Background()
			if bc.traced {
				sdkTP := newCallSpans(tp)
				opt = func(o *s3.Options) { o.TracerProvider = sdkTP }
				var span oteltrace.Span
				ctx, span = tp.Tracer("bench").Start(ctx, "head")
				defer span.End()
			}
			c := s3.New(c.Options(), opt)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("bench"), Key: aws.String("k")}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
