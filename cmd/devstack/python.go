package main

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/reportmailer/reportmailer/internal/devstack"
)

// recipePy is the job done in Python the way a platform team would
// without reportmailer: the comparison the load run's -python asks for.
//
//go:embed recipe.py
var recipePy []byte

// pythonModules are what recipe.py imports beyond the standard library.
const pythonModules = "boto3, jinja2, cryptography"

// pythonRecipe times recipe.py draining evs from the load queue, on the
// same stack and endpoints as the worker, and reads its CPU time and
// peak RSS as for the worker.
func (e *env) pythonRecipe(ctx context.Context, out string, endpoints map[string]string, evs []loadEvent, enqueued []time.Time) (figures, error) {
	py, err := exec.LookPath("python3")
	if err != nil {
		return figures{}, fmt.Errorf("-python: python3 is not on the PATH")
	}
	if b, err := exec.CommandContext(ctx, py, "-c", "import "+pythonModules).CombinedOutput(); err != nil {
		return figures{}, fmt.Errorf("-python: python3 cannot import %s (Debian: apt-get install python3-boto3 python3-jinja2 python3-cryptography): %s", pythonModules, bytes.TrimSpace(b))
	}
	script := filepath.Join(out, "recipe.py")
	if err := os.WriteFile(script, recipePy, 0o644); err != nil {
		return figures{}, err
	}
	cmd := exec.CommandContext(ctx, py, script)
	cmd.Env = append(cleanEnv(),
		"RECIPE_QUEUE_URL="+e.queueURL,
		fmt.Sprintf("RECIPE_EVENTS=%d", len(evs)),
		"RECIPE_EDGE_URL="+e.edge.URL,
		"RECIPE_REGION="+devstack.Region,
		"RECIPE_SQS_URL="+endpoints["sqs"],
		"RECIPE_SES_URL="+endpoints["ses"],
		"RECIPE_KEY_FILE="+filepath.Join(out, "cloudfront-private.pem"),
		"RECIPE_KEY_ID="+keyID,
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return figures{}, err
	}
	done := make(chan struct{})
	polled := make(chan int64)
	go func() { polled <- watchPeakRSS(cmd.Process.Pid, done) }()
	err = cmd.Wait()
	took := time.Since(start)
	close(done)
	peak := <-polled
	var res struct {
		Done   int
		Errors []string
	}
	if jerr := json.Unmarshal(stdout.Bytes(), &res); jerr != nil || err != nil || len(res.Errors) > 0 {
		return figures{}, fmt.Errorf("python recipe: %v %v\n%s%s", err, res.Errors, stdout.Bytes(), tail(stderr.String(), 2000))
	}
	f := e.measure(evs, enqueued, took)
	f.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	f.peakRSS = peak
	return f, nil
}

// tail is the last n bytes of s.
func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// pythonThreads is recipe.py's THREADS.
const pythonThreads = 8
