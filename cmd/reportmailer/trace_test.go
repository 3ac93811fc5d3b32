package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	smithytracing "github.com/aws/smithy-go/tracing"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	oteltrace "go.opentelemetry.io/otel/trace"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

func TestTracingEnabled(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"nothing set", nil, false},
		{"endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, true},
		{"traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, true},
		{"sdk disabled", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, false},
		{"exporter none", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, false},
		{"sdk disabled, any case", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"}, false},
		{"sdk disabled, capitalised", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "True"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tracingEnabled(func(k string) string { return tt.env[k] }); got != tt.want {
				t.Errorf("tracingEnabled = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestOTLPProtocol: gRPC, which the exporter does not speak, is refused
// at start, naming the variable and its value.
func TestOTLPProtocol(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string // "" for no error
	}{
		{"unset", nil, ""},
		{"http/protobuf", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, ""},
		{"grpc", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL=grpc"},
		{"traces grpc", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc"},
		{"http/json", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL=http/json"},
		{"traces variable wins", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}
			for k, v := range tt.env {
				env[k] = v
			}
			tp, err := newTracerProvider(context.Background(), func(k string) string { return env[k] })
			if tp != nil {
				defer tp.Shutdown(context.Background())
			}
			if got := fmt.Sprint(err); tt.want == "" && err != nil || tt.want != "" && !strings.Contains(got, tt.want) {
				t.Errorf("newTracerProvider: %v, want %q", err, tt.want)
			}
		})
	}
}

// TestDrainExportsTraces: drain exports nothing without
// OTEL_EXPORTER_OTLP_ENDPOINT; with it, an in-process OTLP/HTTP
// receiver gets one trace per message and no other: the message's span,
// its stage spans, and the AWS SDK's spans of the calls made in them,
// for messages drained concurrently that share objects.
func TestDrainExportsTraces(t *testing.T) {
	var mu sync.Mutex
	var posts []string // the paths posted to
	var spans []*tracepb.Span
	var resources []*resourcepb.Resource
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		// An ExportTraceServiceRequest is a TracesData on the wire.
		var req tracepb.TracesData
		err := proto.Unmarshal(b, &req)
		mu.Lock()
		defer mu.Unlock()
		posts = append(posts, r.URL.Path)
		if err != nil {
			t.Errorf("an OTLP post that is not an ExportTraceServiceRequest: %v", err)
		}
		for _, rs := range req.ResourceSpans {
			resources = append(resources, rs.Resource)
			for _, ss := range rs.ScopeSpans {
				spans = append(spans, ss.Spans...)
			}
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer rcv.Close()

	e := newITEnv(t, "goaws")
	q, dlq := e.queues(t)
	cfg := e.config(t, q, dlq)
	run := func(events map[string][]string) {
		t.Helper()
		for ev, keys := range events {
			for _, k := range keys {
				e.put(t, k, nil)
			}
			e.send(t, q, nativeBody(ev, "tr", nil, keys...))
		}
		var stdout, stderr bytes.Buffer
		m := &Main{Stdout: &stdout, Stderr: &stderr, Getenv: os.Getenv, Environ: os.Environ}
		if code := m.Run(context.Background(), []string{"drain", "-config", cfg, "-schedule", "it"}); code != ExitOK {
			t.Fatalf("drain exit %d: %s\n%s", code, stdout.String(), stderr.String())
		}
	}
	run(map[string][]string{"evt-untraced": {"trace/u.pdf"}})
	mu.Lock()
	if len(posts) > 0 {
		t.Fatalf("traces exported with no OTEL_EXPORTER_OTLP_ENDPOINT: %d posts", len(posts))
	}
	mu.Unlock()

	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.URL)
	// Drained at the default concurrency, each object linked twice.
	run(map[string][]string{"evt-1": {"trace/a.pdf", "trace/b.pdf"}, "evt-2": {"trace/a.pdf", "trace/c.pdf"}, "evt-3": {"trace/b.pdf", "trace/c.pdf"}})
	mu.Lock()
	defer mu.Unlock()
	for _, p := range posts {
		if p != "/v1/traces" {
			t.Errorf("posted to %s, want /v1/traces", p)
		}
	}
	for _, r := range resources {
		if v := attr(r.GetAttributes(), "service.name"); v != "reportmailer" {
			t.Errorf("resource service.name %q, want reportmailer", v)
		}
	}

	byID := map[string]*tracepb.Span{}
	for _, s := range spans {
		byID[string(s.SpanId)] = s
	}
	roots := map[string]*tracepb.Span{} // trace id -> the message's span
	for _, s := range spans {
		if len(s.ParentSpanId) > 0 {
			continue
		}
		if s.Name != "reportmailer.message" {
			t.Errorf("a stray root span %q", s.Name)
			continue
		}
		if roots[string(s.TraceId)] != nil {
			t.Error("two message spans in one trace")
		}
		roots[string(s.TraceId)] = s
	}
	if len(roots) != 3 {
		t.Fatalf("%d traces of a message, want 3 (one per message)", len(roots))
	}
	stages := map[string][]string{} // message span id -> its children's names, once each
	for _, s := range spans {
		if roots[string(s.TraceId)] == nil {
			t.Errorf("span %q is in no message's trace", s.Name)
			continue
		}
		if len(s.ParentSpanId) == 0 {
			continue
		}
		p := byID[string(s.ParentSpanId)]
		if p == nil || string(p.TraceId) != string(s.TraceId) {
			t.Errorf("span %q has no parent in its trace", s.Name)
			continue
		}
		if len(p.ParentSpanId) == 0 && s.Kind != tracepb.Span_SPAN_KIND_CLIENT && !slices.Contains(stages[string(p.SpanId)], s.Name) {
			stages[string(p.SpanId)] = append(stages[string(p.SpanId)], s.Name)
		}
		// The SDK's call spans, in the stage they belong to.
		for call, stage := range map[string]string{"S3.HeadObject": "head", "SESv2.SendEmail": "send", "SQS.DeleteMessageBatch": "settle"} {
			if s.Name == call && p.Name != stage {
				t.Errorf("%s runs in %q, want %q", call, p.Name, stage)
			}
		}
		for _, phase := range []string{"SignRequest", "RetryLoop", "Attempt", "DoHTTPRequest", "OperationSerializer"} {
			if strings.Contains(s.Name, phase) {
				t.Errorf("the SDK's phase span %s was exported", s.Name)
			}
		}
		for _, a := range s.Attributes {
			if strings.Contains(a.Value.GetStringValue(), "tr@acme.example") {
				t.Errorf("span %q names the recipient's address in %s", s.Name, a.Key)
			}
		}
	}
	for _, root := range roots {
		got := stages[string(root.SpanId)]
		slices.Sort(got)
		if want := []string{"claim", "head", "receive", "render", "send", "settle", "sign"}; !slices.Equal(got, want) {
			t.Errorf("stages of message %s %q, want %q", attr(root.Attributes, "messaging.message.id"), got, want)
		}
		if attr(root.Attributes, "reportmailer.settlement") != "acked" {
			t.Errorf("message %s settled %q, want acked", attr(root.Attributes, "messaging.message.id"), attr(root.Attributes, "reportmailer.settlement"))
		}
	}
	var calls []string
	for _, s := range spans {
		if s.Kind == tracepb.Span_SPAN_KIND_CLIENT && !slices.Contains(calls, s.Name) {
			calls = append(calls, s.Name)
		}
	}
	for _, want := range []string{"S3.HeadObject", "SESv2.SendEmail", "SQS.DeleteMessageBatch"} {
		if !slices.Contains(calls, want) {
			t.Errorf("no %s span; the SDK's spans are %q", want, calls)
		}
	}
}

// attr returns the string value of the attribute key of kvs.
func attr(kvs []*commonpb.KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value.GetStringValue()
		}
	}
	return ""
}

// TestSDKPhaseSpansNotStarted: of the spans the AWS SDK opens for a
// call, only the call's own (a client span, with its attributes) is
// started and exported; its phases and attempts are not, and what ran
// inside them is the call's child.
func TestSDKPhaseSpansNotStarted(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	p := newCallSpans(tp)
	// In a stage's span, as the SDK's invokeOperation and middleware do.
	tr := p.Tracer("github.com/aws/aws-sdk-go-v2/service/sqs")
	stage, stageSpan := tp.Tracer("test").Start(context.Background(), "settle")
	ctx := smithytracing.WithOperationTracer(stage, tr)
	ctx, call := tr.StartSpan(ctx, "SQS.ReceiveMessage", func(o *smithytracing.SpanOptions) {
		o.Kind = smithytracing.SpanKindClient
		o.Properties.Set("rpc.method", "ReceiveMessage")
	})
	rctx, retry := smithytracing.StartSpan(ctx, "RetryLoop")
	actx, attempt := smithytracing.StartSpan(rctx, "Attempt", func(o *smithytracing.SpanOptions) { o.Properties.Set("operation.attempt", 1) })
	hctx, do := smithytracing.StartSpan(actx, "DoHTTPRequest")
	if got, _ := smithytracing.GetSpan(hctx); got != call {
		t.Errorf("the span in the HTTP request's context is %q, want the call's", got.Name())
	}
	do.SetProperty("http.status_code", 200)
	do.End()
	attempt.End()
	retry.End()
	call.SetProperty("error", false)
	call.End()
	stageSpan.End()

	spans := exp.GetSpans()[:len(exp.GetSpans())-1] // the stage's span last
	if len(spans) != 1 || spans[0].Name != "SQS.ReceiveMessage" {
		var names []string
		for _, s := range spans {
			names = append(names, s.Name)
		}
		t.Fatalf("exported %q, want only the call's span", names)
	}
	attrs := map[string]string{}
	for _, a := range spans[0].Attributes {
		attrs[string(a.Key)] = a.Value.Emit()
	}
	if attrs["rpc.method"] != "ReceiveMessage" || attrs["error"] != "false" {
		t.Errorf("the call's span has attributes %v, want rpc.method=ReceiveMessage and error=false", attrs)
	}
	if p.Tracer("github.com/aws/aws-sdk-go-v2/service/sqs") != tr {
		t.Error("a second Tracer of the same scope is a new tracer, want the first")
	}

	// Under a message sampled out, the call starts no span either,
	// even for a sampler that would sample it.
	exp.Reset()
	tr = newCallSpans(sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSampler(sdktrace.AlwaysSample()))).Tracer("sqs")
	sampledOut := oteltrace.ContextWithSpanContext(context.Background(), oteltrace.NewSpanContext(oteltrace.SpanContextConfig{
		TraceID: oteltrace.TraceID{1}, SpanID: oteltrace.SpanID{1}}))
	_, call = tr.StartSpan(smithytracing.WithOperationTracer(sampledOut, tr), "SQS.DeleteMessage", func(o *smithytracing.SpanOptions) {
		o.Kind = smithytracing.SpanKindClient
	})
	call.End()
	if spans := exp.GetSpans(); len(spans) != 0 {
		t.Errorf("a call under a span sampled out exported %d spans, want none", len(spans))
	}

	// Outside any span (a call of the run, not of a message), no span
	// either: no trace of its own.
	_, call = tr.StartSpan(smithytracing.WithOperationTracer(context.Background(), tr), "SQS.ReceiveMessage", func(o *smithytracing.SpanOptions) {
		o.Kind = smithytracing.SpanKindClient
	})
	call.End()
	if spans := exp.GetSpans(); len(spans) != 0 {
		t.Errorf("a call outside any span exported %d spans, want none", len(spans))
	}
}

// TestSDKClientsTraced: every AWS client newApp builds takes the
// process's tracer provider when tracing is on, KMS's included.
func TestSDKClientsTraced(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	o := &observability{tp: tp, sdkTP: newCallSpans(tp)}
	var s3o s3.Options
	o.s3Options(&s3o)
	var sqso sqs.Options
	o.sqsOptions(&sqso)
	var kmso kms.Options
	o.kmsOptions(&kmso)
	for name, got := range map[string]smithytracing.TracerProvider{"S3": s3o.TracerProvider, "SQS": sqso.TracerProvider, "KMS": kmso.TracerProvider} {
		if got != o.sdkTP {
			t.Errorf("the %s client's tracer provider is %T, want the process's", name, got)
		}
	}
}
