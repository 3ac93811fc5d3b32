package main

import (
	"bufio"
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/reportmailer/reportmailer/internal/awsproxy"
	"github.com/reportmailer/reportmailer/internal/devstack"
	"github.com/reportmailer/reportmailer/internal/edge"
	"github.com/reportmailer/reportmailer/worker/iam"
)

const (
	bucket = "acme-reports"
	keyID  = "KDEMO0000000001"
)

// env is a running local stack with everything reportmailer needs.
type env struct {
	out           string
	bin           string
	stack         *devstack.Stack
	edge          *edge.Server
	s3            *s3.Client
	sqs           *sqs.Client
	queueURL, dlq string
	config        string // path of the generated config file
	// proxies stand between reportmailer and the stack, enforcing the
	// policy `reportmailer iam` declares for the config.
	proxies []*awsproxy.Proxy
	// awsEnv points reportmailer at the proxies; stackEnv points a
	// person's own aws commands at the stack itself.
	awsEnv, stackEnv []string
	closers          []func()
	// lastRun is how the last reportmailer run ended: its CPU time and
	// peak RSS, for a load run.
	lastRun *os.ProcessState
	// lastPeakRSS is the last run's peak resident set, in bytes, from
	// /proc (VmHWM); 0 where there is no /proc. The rusage of a child
	// is no use: Go starts it with vfork, so its ru_maxrss includes the
	// memory of this process, which holds the whole stack.
	lastPeakRSS int64
	// runEnv is added to reportmailer's environment (GOMAXPROCS).
	runEnv []string
}

// upOptions change the stack and config up makes, for a load run.
type upOptions struct {
	ecdsa       bool // an ECDSA P-256 key (SHA-256) instead of RSA-2048
	concurrency int  // schedules[].concurrency; 0: the default
	maxMessages int  // schedules[].max_messages; 0: the default
	budget      time.Duration
	replicas    int // pacing.replicas; 0: the default
}

// up starts the stack, the edge and the queues, makes a key pair and
// writes a config file for reportmailer into out.
func up(ctx context.Context, bin, out string, logger *slog.Logger) (*env, error) {
	return upWith(ctx, bin, out, logger, upOptions{})
}

// upWith is up with options.
func upWith(ctx context.Context, bin, out string, logger *slog.Logger, o upOptions) (*env, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("reportmailer binary: %w (run make build)", err)
	}
	if err := os.RemoveAll(out); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(out, "emails"), 0o755); err != nil {
		return nil, err
	}
	e := &env{out: out, bin: bin}
	stack, err := devstack.Start(ctx, logger)
	if err != nil {
		return nil, fmt.Errorf("local stack: %w", err)
	}
	e.stack = stack
	e.closers = append(e.closers, func() { stack.Close() })
	// Nothing is allowed until the config's policy is known.
	for _, x := range []struct {
		svc    awsproxy.Service
		target string
	}{{awsproxy.SQS, stack.SQSURL}, {awsproxy.S3, stack.S3URL}, {awsproxy.SES, stack.SESURL}} {
		p, err := awsproxy.New(awsproxy.Options{Service: x.svc, Target: x.target, Region: devstack.Region, Account: devstack.AccountID,
			Policy: &iam.Document{Version: iam.Version, Statement: []iam.Statement{}}})
		if err != nil {
			e.close()
			return nil, err
		}
		e.proxies = append(e.proxies, p)
		e.closers = append(e.closers, p.Close)
	}

	creds := credentials.NewStaticCredentialsProvider("demo", "demo", "")
	e.s3 = s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(stack.S3URL), UsePathStyle: true, Credentials: creds})
	e.sqs = sqs.New(sqs.Options{Region: "us-east-1", BaseEndpoint: aws.String(stack.SQSURL), Credentials: creds})

	if _, err := e.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		e.close()
		return nil, fmt.Errorf("create bucket: %w", err)
	}
	var key crypto.Signer
	if o.ecdsa {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	} else {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil {
		e.close()
		return nil, err
	}
	keyFile := filepath.Join(out, "cloudfront-private.pem")
	der, _ := x509.MarshalPKCS8PrivateKey(key) // what OpenSSL 3 writes by default
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		e.close()
		return nil, err
	}
	pub, _ := x509.MarshalPKIXPublicKey(key.Public())
	os.WriteFile(filepath.Join(out, keyID+".pem"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644)

	e.edge, err = edge.Start(&edge.Edge{S3: e.s3, Bucket: bucket, Keys: map[string]crypto.PublicKey{keyID: key.Public()}, Logger: logger})
	if err != nil {
		e.close()
		return nil, err
	}
	e.closers = append(e.closers, func() { e.edge.Close() })

	dlq, err := e.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("reports-ready-dlq")})
	if err != nil {
		e.close()
		return nil, fmt.Errorf("create dlq: %w", err)
	}
	e.dlq = aws.ToString(dlq.QueueUrl)
	attrs, err := e.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: dlq.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		e.close()
		return nil, fmt.Errorf("dlq arn: %w", err)
	}
	redrive, _ := json.Marshal(map[string]string{"deadLetterTargetArn": attrs.Attributes["QueueArn"], "maxReceiveCount": "3"})
	q, err := e.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("reports-ready"), Attributes: map[string]string{"RedrivePolicy": string(redrive)}})
	if err != nil {
		e.close()
		return nil, fmt.Errorf("create queue: %w", err)
	}
	e.queueURL = aws.ToString(q.QueueUrl)

	e.config = filepath.Join(out, "reportmailer.yaml")
	hashLine, extra := "", ""
	if o.ecdsa {
		hashLine = "\n    hash: sha256 # CloudFront takes ECDSA keys with SHA-256 only"
	}
	if o.concurrency > 0 {
		extra += fmt.Sprintf("\n    concurrency: %d", o.concurrency)
	}
	if o.maxMessages > 0 {
		extra += fmt.Sprintf("\n    max_messages: %d", o.maxMessages)
	}
	pacing := ""
	if o.replicas > 0 {
		pacing = fmt.Sprintf("pacing:\n  replicas: %d\n", o.replicas)
	}
	cfg := fmt.Sprintf(`# Written by devstack for the local stack.
%ssender:
  from: "Acme Reports <reports@acme.example>"
links:
  ttl: 168h
  cloudfront:
    domain: %s
    key_id: %s
    private_key_file: %s%s
recipients:
  allowed_domains: [acme.example, "*.acme.example"]
  max: 5
reports:
  bucket: %s
ledger:
  bucket: %s
s3:
  use_path_style: true
log:
  format: text  # the demo shows the worker's lines to people, not to a log collector
schedules:
  - name: on-demand
    cron: "@every 10s"
    mode: each
    queue_url: %s
    dead_letter_queue_url: %s
    wait_time: 1s
    budget: %s%s
`, pacing, e.edge.URL, keyID, keyFile, hashLine, bucket, bucket, e.queueURL, e.dlq, cmp.Or(o.budget, 2*time.Minute), extra)
	if err := os.WriteFile(e.config, []byte(cfg), 0o644); err != nil {
		e.close()
		return nil, err
	}
	// The same variables the SDK reads in production, pointed at the
	// local stack: through the proxies for reportmailer, directly for
	// anyone else.
	common := []string{"AWS_REGION=" + devstack.Region, "AWS_ACCESS_KEY_ID=demo", "AWS_SECRET_ACCESS_KEY=demo", "AWS_EC2_METADATA_DISABLED=true"}
	e.awsEnv = append(slices.Clone(common),
		"AWS_ENDPOINT_URL_SQS="+e.proxies[0].URL, "AWS_ENDPOINT_URL_S3="+e.proxies[1].URL, "AWS_ENDPOINT_URL_SESV2="+e.proxies[2].URL)
	e.stackEnv = append(slices.Clone(common),
		"AWS_ENDPOINT_URL_SQS="+stack.SQSURL, "AWS_ENDPOINT_URL_S3="+stack.S3URL, "AWS_ENDPOINT_URL_SESV2="+stack.SESURL)
	if err := e.enforceDeclaredPolicy(ctx); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

// enforceDeclaredPolicy asks the binary for the least-privilege policy
// of the config (`reportmailer iam`, as a deployment would), keeps it in
// out/iam-policy.json and has the proxies enforce it.
func (e *env) enforceDeclaredPolicy(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, e.bin, "iam", "-config", e.config, "-region", devstack.Region, "-account", devstack.AccountID)
	cmd.Env = append(cleanEnv(), e.stackEnv...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("reportmailer iam: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	var policy iam.Document
	if err := json.Unmarshal(out, &policy); err != nil {
		return fmt.Errorf("reportmailer iam: %w", err)
	}
	if err := os.WriteFile(filepath.Join(e.out, "iam-policy.json"), out, 0o644); err != nil {
		return err
	}
	for _, p := range e.proxies {
		p.SetPolicy(&policy)
	}
	return nil
}

// iamSummary counts the calls reportmailer made through the proxies and
// those the policy refused (with a line for each refusal).
func (e *env) iamSummary() (calls, denied int, refusals []string) {
	for _, p := range e.proxies {
		for _, c := range p.AllCounts() {
			calls += c.Seen
			denied += c.Denied
		}
		for _, d := range p.Denials() {
			refusals = append(refusals, fmt.Sprintf("%s: no statement allows %s on %s", d.Operation, d.Action, d.Resource))
		}
		if n := p.Counts("Unknown").Denied; n > 0 {
			refusals = append(refusals, fmt.Sprintf("%d requests the proxy could not identify", n))
		}
	}
	return calls, denied, refusals
}

func (e *env) close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
}

// reportmailer runs the binary with args, writing its logs to logFile
// and, prefixed, to w. It returns the exit code and its stdout.
func (e *env) reportmailer(ctx context.Context, w io.Writer, logFile string, args ...string) (int, string, error) {
	r, err := e.runReportmailer(ctx, w, logFile, args...)
	e.lastRun, e.lastPeakRSS = r.state, r.peakRSS
	return r.code, r.stdout, err
}

// process is how one reportmailer run ended.
type process struct {
	code    int
	stdout  string
	state   *os.ProcessState
	peakRSS int64
}

// runReportmailer is reportmailer for runs at the same time: it keeps
// no state in e.
func (e *env) runReportmailer(ctx context.Context, w io.Writer, logFile string, args ...string) (process, error) {
	cmd := exec.CommandContext(ctx, e.bin, args...)
	cmd.Env = append(append(cleanEnv(), e.awsEnv...), e.runEnv...)
	var stdout strings.Builder
	cmd.Stdout = &stdout
	lf, err := os.Create(logFile)
	if err != nil {
		return process{}, err
	}
	defer lf.Close()
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			fmt.Fprintln(lf, sc.Text())
			if w != nil {
				fmt.Fprintf(w, "    | %s\n", sc.Text())
			}
		}
	}()
	var peak int64
	if err = cmd.Start(); err == nil {
		done := make(chan struct{})
		polled := make(chan struct{})
		go func() {
			defer close(polled)
			peak = watchPeakRSS(cmd.Process.Pid, done)
		}()
		err = cmd.Wait()
		close(done)
		<-polled
	}
	pw.Close()
	wg.Wait()
	r := process{stdout: stdout.String(), state: cmd.ProcessState, peakRSS: peak}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
		return r, nil
	}
	return r, err
}

// cleanEnv is the process environment without AWS settings, so a
// developer's own profile cannot leak into the demo.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "REPORTMAILER_") {
			out = append(out, kv)
		}
	}
	return out
}

// watchPeakRSS reads pid's VmHWM from /proc every 100 ms until done is
// closed, and returns the last value read, in bytes: VmHWM only rises,
// so the last read before the process exits misses at most 100 ms.
func watchPeakRSS(pid int, done <-chan struct{}) int64 {
	var peak int64
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				var kb int64
				if _, err := fmt.Sscanf(line, "VmHWM: %d kB", &kb); err == nil && kb*1024 > peak {
					peak = kb * 1024
				}
			}
		}
		select {
		case <-done:
			return peak
		case <-t.C:
		}
	}
}
