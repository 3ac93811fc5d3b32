package main

import (
	"context"
	"fmt"
	"strings"
	"sync"

	smithytracing "github.com/aws/smithy-go/tracing"
	"github.com/aws/smithy-go/tracing/smithyoteltracing"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/reportmailer/reportmailer/worker/mail"
)

// tracingEnabled reports whether the standard OpenTelemetry variables
// ask for traces: an OTLP endpoint is set and the SDK is not disabled.
func tracingEnabled(getenv func(string) string) bool {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") || strings.EqualFold(getenv("OTEL_TRACES_EXPORTER"), "none") {
		return false
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// newTracerProvider returns a tracer provider exporting over OTLP/HTTP
// as the OTEL_EXPORTER_OTLP_* variables say (endpoint, headers,
// timeout, TLS), or nil when tracingEnabled says no: then nothing is
// exported and nothing is even recorded.
func newTracerProvider(ctx context.Context, getenv func(string) string) (*sdktrace.TracerProvider, error) {
	if !tracingEnabled(getenv) {
		return nil, nil
	}
	if err := checkOTLPProtocol(getenv); err != nil {
		return nil, err
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("otlp trace exporter: %w", err)
	}
	res := resource.Default()
	if getenv("OTEL_SERVICE_NAME") == "" {
		if r, err := resource.Merge(res, resource.NewSchemaless(attribute.String("service.name", "reportmailer"))); err == nil {
			res = r
		}
	}
	// The SDK's sampler: the default, or as OTEL_TRACES_SAMPLER says.
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}

// checkOTLPProtocol refuses an OTLP protocol other than the one the
// exporter speaks (http/protobuf), which the SDK would ignore: traces
// sent over HTTP to a gRPC port are lost without a word.
func checkOTLPProtocol(getenv func(string) string) error {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		v := getenv(k)
		if v == "" {
			continue
		}
		if v != "http/protobuf" {
			return fmt.Errorf("%s=%s: reportmailer exports traces over OTLP/HTTP only: set http/protobuf, and the collector's OTLP/HTTP endpoint (port 4318)", k, v)
		}
		return nil // the traces-specific variable wins
	}
	return nil
}

// callSpans is the tracer provider the AWS SDK clients get: the SDK's
// OpenTelemetry adapter (smithyoteltracing) on the process's provider,
// for the span of each call (SQS.ReceiveMessage, SESv2.SendEmail, ...)
// only. The SDK also opens about ten spans inside each call, one per
// phase (RetryLoop, Attempt, SignRequest, DoHTTPRequest, ...): those
// are not started at all. Started and then dropped by a sampler, they
// were about half of tracing's CPU in a drain (docs/benchmarks.md); the
// call's span already covers them, with the service, operation and
// status. A call made outside any span starts none (callTracer).
type callSpans struct {
	adapted smithytracing.TracerProvider

	mu      sync.Mutex
	tracers map[string]smithytracing.Tracer
}

// newCallSpans returns the SDK clients' tracer provider on tp.
func newCallSpans(tp oteltrace.TracerProvider) *callSpans {
	return &callSpans{adapted: smithyoteltracing.Adapt(tp), tracers: map[string]smithytracing.Tracer{}}
}

// Tracer returns the tracer of scope, made once: the SDK asks for it on
// every call.
func (p *callSpans) Tracer(scope string, opts ...smithytracing.TracerOption) smithytracing.Tracer {
	if len(opts) > 0 {
		return callTracer{p.adapted.Tracer(scope, opts...)}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.tracers[scope]
	if !ok {
		t = callTracer{p.adapted.Tracer(scope)}
		p.tracers[scope] = t
	}
	return t
}

// callTracer starts the SDK's client spans, one per call, and no other,
// and only inside a span that is sampled: a message's.
type callTracer struct{ smithytracing.Tracer }

var noSpan = smithytracing.NopTracerProvider{}.Tracer("")

func (t callTracer) StartSpan(ctx context.Context, name string, opts ...smithytracing.SpanOption) (context.Context, smithytracing.Span) {
	if len(opts) == 0 { // a phase: the call's span has options
		return noSpan.StartSpan(ctx, name)
	}
	var o smithytracing.SpanOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.Kind != smithytracing.SpanKindClient {
		return noSpan.StartSpan(ctx, name)
	}
	if sc := oteltrace.SpanContextFromContext(ctx); !sc.IsSampled() {
		// A call of the run rather than of one message (a receive, a
		// heartbeat, a hand-back): no span, rather than a trace of its
		// own; or a call of a message sampled out, where worker/tracing
		// starts no stage span either.
		return noSpan.StartSpan(ctx, name)
	}
	return t.Tracer.StartSpan(ctx, name, func(so *smithytracing.SpanOptions) { *so = o })
}

// The SDK takes its tracer provider per client, not from aws.Config:
// these give each client built in newApp the process's.

func (o *observability) s3Options(opt *s3.Options) {
	if o.tp != nil {
		opt.TracerProvider = o.sdkTP
	}
}

func (o *observability) sqsOptions(opt *sqs.Options) {
	if o.tp != nil {
		opt.TracerProvider = o.sdkTP
	}
}

func (o *observability) kmsOptions(opt *kms.Options) {
	if o.tp != nil {
		opt.TracerProvider = o.sdkTP
	}
}

// traceSES rebuilds the SES clients of a paced mailer with the tracer
// provider, keeping their other options (the retryer).
func (o *observability) traceSES(p *mail.Paced) {
	if o.tp == nil {
		return
	}
	with := func(opt *sesv2.Options) { opt.TracerProvider = o.sdkTP }
	if c, ok := p.Account.(*sesv2.Client); ok {
		p.Account = sesv2.New(c.Options(), with)
	}
	if m, ok := p.Mailer.(*mail.SES); ok {
		if c, ok := m.Client.(*sesv2.Client); ok {
			m.Client = sesv2.New(c.Options(), with)
		}
	}
}
