package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/smithy-go/tracing/smithyoteltracing"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	oteltrace "go.opentelemetry.io/otel/trace"

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
	opts := []sdktrace.TracerProviderOption{sdktrace.WithSpanProcessor(sdkPhases{sdktrace.NewBatchSpanProcessor(exp)}), sdktrace.WithResource(res)}
	if getenv("OTEL_TRACES_SAMPLER") == "" {
		// The SDK's default sampler, which does not even record the
		// phase spans. With OTEL_TRACES_SAMPLER set, the SDK's own
		// sampler applies and sdkPhases drops them at the end.
		opts = append(opts, sdktrace.WithSampler(phaseSampler{sdktrace.ParentBased(sdktrace.AlwaysSample())}))
	}
	return sdktrace.NewTracerProvider(opts...), nil
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

// phaseSampler drops the SDK's phase spans, and the spans inside them,
// and asks its Sampler about every other.
type phaseSampler struct{ sdktrace.Sampler }

func (p phaseSampler) ShouldSample(params sdktrace.SamplingParameters) sdktrace.SamplingResult {
	if sdkPhaseSpans[params.Name] {
		return sdktrace.SamplingResult{Decision: sdktrace.Drop,
			Tracestate: oteltrace.SpanContextFromContext(params.ParentContext).TraceState()}
	}
	return p.Sampler.ShouldSample(params)
}

func (p phaseSampler) Description() string {
	return "DropAWSSDKPhases{" + p.Sampler.Description() + "}"
}

// sdkPhaseSpans are the spans the AWS SDK opens inside each call, for
// its own phases. They are not exported: about ten per call, they made
// tracing cost 15% of an end-to-end run (docs/benchmarks.md), and each
// call's own span (SQS.ReceiveMessage, SESv2.SendEmail, ...) already
// spans them, with the service, operation and status.
var sdkPhaseSpans = map[string]bool{
	"RetryLoop": true, "DoHTTPRequest": true, "OperationSerializer": true, "OperationDeserializer": true,
	"ResolveEndpoint": true, "ResolveAuthScheme": true, "GetIdentity": true, "SignRequest": true, "ComputePayloadSHA256": true,
}

// sdkPhases passes on every ended span but the SDK's phase spans.
type sdkPhases struct{ sdktrace.SpanProcessor }

func (p sdkPhases) OnEnd(s sdktrace.ReadOnlySpan) {
	if sdkPhaseSpans[s.Name()] {
		return
	}
	p.SpanProcessor.OnEnd(s)
}

// The SDK takes its tracer provider per client, not from aws.Config:
// these give each client built in newApp the process's.

func (o *observability) s3Options(opt *s3.Options) {
	if o.tp != nil {
		opt.TracerProvider = smithyoteltracing.Adapt(o.tp)
	}
}

func (o *observability) sqsOptions(opt *sqs.Options) {
	if o.tp != nil {
		opt.TracerProvider = smithyoteltracing.Adapt(o.tp)
	}
}

// traceSES rebuilds the SES clients of a paced mailer with the tracer
// provider, keeping their other options (the retryer).
func (o *observability) traceSES(p *mail.Paced) {
	if o.tp == nil {
		return
	}
	with := func(opt *sesv2.Options) { opt.TracerProvider = smithyoteltracing.Adapt(o.tp) }
	if c, ok := p.Account.(*sesv2.Client); ok {
		p.Account = sesv2.New(c.Options(), with)
	}
	if m, ok := p.Mailer.(*mail.SES); ok {
		if c, ok := m.Client.(*sesv2.Client); ok {
			m.Client = sesv2.New(c.Options(), with)
		}
	}
}
