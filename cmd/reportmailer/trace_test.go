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

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
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
	for _, phase := range []string{"SignRequest", "RetryLoop", "OperationSerializer"} {
		if strings.Contains(got, phase) {
			t.Errorf("the SDK's phase span %s was exported", phase)
		}
	}
	if strings.Contains(got, "tr@acme.example") {
		t.Error("the exported traces name the recipient's address")
	}
}

// TestSDKPhaseSpansDropped: the AWS SDK's phase spans are not exported,
// whether the sampler leaves them out (the default) or the processor
// drops them (with OTEL_TRACES_SAMPLER set); each call's span is.
func TestSDKPhaseSpansDropped(t *testing.T) {
	for _, withSampler := range []bool{true, false} {
		exp := tracetest.NewInMemoryExporter()
		opts := []sdktrace.TracerProviderOption{sdktrace.WithSpanProcessor(sdkPhases{sdktrace.NewSimpleSpanProcessor(exp)})}
		if withSampler {
			opts = append(opts, sdktrace.WithSampler(phaseSampler{sdktrace.ParentBased(sdktrace.AlwaysSample())}))
		}
		tr := sdktrace.NewTracerProvider(opts...).Tracer("test")
		ctx, call := tr.Start(context.Background(), "SQS.ReceiveMessage")
		pctx, phase := tr.Start(ctx, "RetryLoop")
		_, inner := tr.Start(pctx, "DoHTTPRequest")
		inner.End()
		phase.End()
		call.End()
		var names []string
		for _, s := range exp.GetSpans() {
			names = append(names, s.Name)
		}
		if len(names) != 1 || names[0] != "SQS.ReceiveMessage" {
			t.Errorf("sampler %v: exported %q, want only the call's span", withSampler, names)
		}
	}
}
