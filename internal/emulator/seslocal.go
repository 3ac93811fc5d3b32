package emulator

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sesLocalCLI is aws-ses-v2-local's entry point, relative to the module
// root. It is run with node directly: killing an npx wrapper leaves the
// server running.
const sesLocalCLI = "node_modules/aws-ses-v2-local/dist/cli.js"

// The CLI prints this once its socket is bound; for 127.0.0.1 it names the
// host "localhost".
var sesLocalReady = regexp.MustCompile(`server running at http://[^\s:/]+:(\d+)`)

// DefaultSESAccount is the GetAccount response StartSESLocal configures
// when given no account: production access, sending enabled and a quota
// of 50,000 a day at 14 a second. aws-ses-v2-local returns the JSON as
// given, so SentLast24Hours stays 0 however much is sent.
const DefaultSESAccount = `{
  "DedicatedIpAutoWarmupEnabled": false,
  "Details": {
    "AdditionalContactEmailAddresses": [],
    "ContactLanguage": "EN",
    "MailType": "TRANSACTIONAL",
    "ReviewDetails": {"CaseId": "local", "Status": "GRANTED"},
    "UseCaseDescription": "reportmailer integration tests",
    "WebsiteURL": "https://example.com"
  },
  "EnforcementStatus": "HEALTHY",
  "ProductionAccessEnabled": true,
  "SendingEnabled": true,
  "SendQuota": {"Max24HourSend": 50000, "MaxSendRate": 14, "SentLast24Hours": 0},
  "SuppressionAttributes": {"SuppressedReasons": []}
}`

// StartSESLocal starts aws-ses-v2-local (SES v2 SendEmail, GetAccount and
// templates) on a free 127.0.0.1 port and returns its base URL,
// http://127.0.0.1:port. It returns once GET /health-check answers, and
// stops the emulator when t's cleanups run. Each call starts a separate
// emulator with an empty store.
//
// account is the GetAccount response, as JSON; "" means
// DefaultSESAccount. The emulator checks it against its schema only when
// GetAccount is called, and answers "Bad Request Exception" if a field is
// missing, so start from DefaultSESAccount when changing it. The emulator
// never relays mail: SMTP_TRANSPORT is removed from its environment.
//
// It fails t if node or the package is missing, if account is not JSON, or
// if the emulator does not start; the failure quotes the tail of its
// output.
func StartSESLocal(t testing.TB, account string) string {
	t.Helper()
	root, node := setup(t, "aws-ses-v2-local")
	if account == "" {
		account = DefaultSESAccount
	}
	if !json.Valid([]byte(account)) {
		t.Fatalf("emulator: aws-ses-v2-local: account is not valid JSON: %s", account)
	}
	cli := filepath.Join(root, sesLocalCLI)
	if _, err := os.Stat(cli); err != nil {
		t.Fatalf("emulator: aws-ses-v2-local: %v: run `npm ci` in %s (or `make test`, which does it)", err, root)
	}

	// Port 0: the kernel picks a free port and the CLI prints it, so there
	// is no window in which another process can take it.
	cmd := exec.Command(node, cli, "--host", "127.0.0.1", "--port", "0")
	cmd.Dir = root
	cmd.Env = append(environWithout("AWS_SES_ACCOUNT", "SMTP_TRANSPORT"), "AWS_SES_ACCOUNT="+account)
	base, _ := startProcess(t, "aws-ses-v2-local", cmd, sesLocalReady, "/health-check")
	return base
}

func environWithout(names ...string) []string {
	var env []string
outer:
	for _, kv := range os.Environ() {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue outer
			}
		}
		env = append(env, kv)
	}
	return env
}

// SESLocalEmail is an email aws-ses-v2-local accepted, in the shape of
// its GET /store. For Raw content the fields are what it parsed out of the
// MIME message. It does not keep EmailTags or ConfigurationSetName.
type SESLocalEmail struct {
	MessageID   string
	From        string
	Destination SESLocalDestination
	ReplyTo     []string
	Subject     string
	HTML        string
	Text        string
	Headers     map[string]string // custom headers of Simple and Template content
	At          time.Time         // to the second
}

// SESLocalDestination is an email's recipients.
type SESLocalDestination struct {
	To, Cc, Bcc []string
}

// To returns the email's To addresses, Destination.To.
func (e SESLocalEmail) To() []string { return e.Destination.To }

// SESLocalEmails returns the emails the aws-ses-v2-local at baseURL
// accepted at or after since, oldest first. The emulator keeps times to
// the second, so since is truncated to the second; the zero time means
// all of them.
func SESLocalEmails(ctx context.Context, baseURL string, since time.Time) ([]SESLocalEmail, error) {
	u := strings.TrimSuffix(baseURL, "/") + "/store"
	if !since.IsZero() {
		u += "?since=" + strconv.FormatInt(since.Unix(), 10)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("ses store: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ses store: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return nil, fmt.Errorf("ses store: status %s: %s", resp.Status, b)
	}

	// GET /store answers {"templates":{...},"emails":[...]}.
	var store struct {
		Emails []struct {
			MessageID   string   `json:"messageId"`
			From        string   `json:"from"`
			ReplyTo     []string `json:"replyTo"`
			Destination struct {
				To  []string `json:"to"`
				Cc  []string `json:"cc"`
				Bcc []string `json:"bcc"`
			} `json:"destination"`
			Subject string `json:"subject"`
			Body    struct {
				HTML string `json:"html"`
				Text string `json:"text"`
			} `json:"body"`
			Headers []struct {
				Name  string `json:"name"`
				Value string `json:"value"`
			} `json:"headers"`
			At int64 `json:"at"` // epoch seconds
		} `json:"emails"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&store); err != nil {
		return nil, fmt.Errorf("ses store: decode: %w", err)
	}
	out := make([]SESLocalEmail, 0, len(store.Emails))
	for _, e := range store.Emails {
		m := SESLocalEmail{
			MessageID: e.MessageID,
			From:      e.From,
			Destination: SESLocalDestination{
				To:  e.Destination.To,
				Cc:  e.Destination.Cc,
				Bcc: e.Destination.Bcc,
			},
			ReplyTo: e.ReplyTo,
			Subject: e.Subject,
			HTML:    e.Body.HTML,
			Text:    e.Body.Text,
			At:      time.Unix(e.At, 0),
		}
		for _, h := range e.Headers {
			if m.Headers == nil {
				m.Headers = make(map[string]string)
			}
			m.Headers[h.Name] = h.Value
		}
		out = append(out, m)
	}
	return out, nil
}
