package main

import (
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

type sqsMessage = sqstypes.Message

var inboxPage = template.Must(template.New("inbox").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>devstack inbox</title>
<style>body{font-family:sans-serif;margin:2em}td,th{padding:.3em 1em;text-align:left}</style></head>
<body><h1>devstack inbox</h1><p>{{len .}} emails accepted by the local SES endpoint. Links open through the local edge.</p>
<table><tr><th>#</th><th>to</th><th>subject</th><th>at</th></tr>
{{range $i, $m := .}}<tr><td>{{$i}}</td><td>{{range $m.To}}{{.}} {{end}}</td><td><a href="/email/{{$i}}">{{$m.Subject}}</a></td><td>{{$m.At.Format "15:04:05"}}</td></tr>
{{end}}</table></body></html>`))

// serveInbox keeps the stack up with an inbox page and reportmailer
// serve running its schedule, until ctx is cancelled.
func serveInbox(ctx context.Context, e *env, w io.Writer) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(rw http.ResponseWriter, r *http.Request) {
		inboxPage.Execute(rw, e.stack.Sent())
	})
	mux.HandleFunc("GET /email/{n}", func(rw http.ResponseWriter, r *http.Request) {
		sent := e.stack.Sent()
		n, err := strconv.Atoi(r.PathValue("n"))
		if err != nil || n < 0 || n >= len(sent) {
			http.NotFound(rw, r)
			return
		}
		rw.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(rw, sent[n].HTML)
	})
	mux.HandleFunc("GET /api/emails", func(rw http.ResponseWriter, r *http.Request) {
		json.NewEncoder(rw).Encode(e.stack.Sent())
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()

	// reportmailer serve drains the queue every 10 s, so events sent to
	// the queue now are delivered too.
	cmd := exec.CommandContext(ctx, e.bin, "serve", "-config", e.config)
	cmd.Env = append(cleanEnv(), e.awsEnv...)
	cmd.Cancel = func() error { return cmd.Process.Signal(interrupt) }
	cmd.WaitDelay = 10 * time.Second
	lf, err := createLog(filepath.Join(e.out, "serve.log"))
	if err != nil {
		return err
	}
	defer lf.Close()
	cmd.Stderr = lf
	if err := cmd.Start(); err != nil {
		return err
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); cmd.Wait() }()

	fmt.Fprintf(w, "\nServing until Ctrl-C:\n  inbox  http://%s/\n  edge   %s\n  reportmailer serve is running (log: %s)\n\nTo send more events:\n", ln.Addr(), e.edge.URL, filepath.Join(e.out, "serve.log"))
	for _, kv := range e.stackEnv {
		fmt.Fprintf(w, "  export %s\n", kv)
	}
	fmt.Fprintf(w, "  aws sqs send-message --queue-url %s --message-body file://event.json\n", e.queueURL)
	<-ctx.Done()
	fmt.Fprintln(w, "\nstopping")
	wg.Wait()
	slog.Debug("stopped")
	return nil
}
