package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	smithytracing "github.com/aws/smithy-go/tracing"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	oteltrace "go.opentelemetry.io/otel/trace"
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
// receiver gets the message's span, its stage spans and the AWS SDK's
// spans of the calls made in them.
func TestDrainExportsTraces(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, r.URL.Path+"\n"+string(b))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer rcv.Close()
	received := func() string {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(bodies, "\n")
	}

	e := newITEnv(t, "goaws")
	q, dlq := e.queues(t)
	cfg := e.config(t, q, dlq)
	run := func(event string) {
		t.Helper()
		e.put(t, "trace/"+event+".pdf", nil)
		e.send(t, q, nativeBody(event, "tr", nil, "trace/"+event+".pdf"))
		var stdout, stderr bytes.Buffer
		m := &Main{Stdout: &stdout, Stderr: &stderr, Getenv: os.Getenv, Environ: os.Environ}
		if code := m.Run(context.Background(), []string{"drain", "-config", cfg, "-schedule", "it"}); code != ExitOK {
			t.Fatalf("drain exit %d: %s\n%s", code, stdout.String(), stderr.String())
		}
	}
	run("evt-untraced")
	if got := received(); got != "" {
		t.Fatalf("traces exported with no OTEL_EXPORTER_OTLP_ENDPOINT: %q", got)
	}

	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.URL)
	run("evt-traced")
	got := received()
	if !strings.HasPrefix(got, "/v1/traces\n") {
		t.Fatalf("nothing posted to /v1/traces: %q", got)
	}
	// OTLP's protobuf keeps span names and string attributes as they
	// are, so they can be looked for in the bytes.
	for _, want := range []string{"reportmailer.message", "head", "claim", "sign", "render", "send", "settle", "reportmailer.settlement",
		"HeadObject", "SendEmail", "ReceiveMessage", "service.name", "reportmailer"} {
		if !strings.Contains(got, want) {
			t.Errorf("the exported traces lack %q", want)
		}
	}
	for _, phase := range []string{"SignRequest", "RetryLoop", "Attempt", "DoHTTPRequest", "OperationSerializer"} {
		if strings.Contains(got, phase) {
			t.Errorf("the SDK's phase span %s was exported", phase)
		}
	}
	if strings.Contains(got, "tr@acme.example") {
		t.Error("the exported traces name the recipient's address")
	}
}

// TestSDKPhaseSpansNotStarted: of the spans the AWS SDK opens for a
// call, only the call's own (a client span, with its attributes) is
// started and exported; its phases and attempts are not, and what ran
// inside them is the call's child.
func TestSDKPhaseSpansNotStarted(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	p := newCallSpans(tp)
	// As the SDK's invokeOperation and middleware do.
	tr := p.Tracer("github.com/aws/aws-sdk-go-v2/service/sqs")
	ctx := smithytracing.WithOperationTracer(context.Background(), tr)
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

	spans := exp.GetSpans()
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
}
