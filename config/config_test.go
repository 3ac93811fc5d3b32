package config_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/worker"
)

const minimal = `
sender: {from: "Reports <reports@example.com>"}
reports: {bucket: acme-reports}
ledger: {bucket: state}
schedules:
  - name: daily
    cron: "0 7 * * *"
    time_zone: Europe/London
    queue_url: https://sqs.eu-west-2.amazonaws.com/1/q
    dead_letter_queue_url: https://sqs.eu-west-2.amazonaws.com/1/dlq
`

func TestExampleIsValid(t *testing.T) {
	b, err := os.ReadFile("example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse(b, nil)
	if err != nil {
		t.Fatalf("example.yaml: %v", err)
	}
	if len(c.Schedules) != 2 || c.Links.CloudFront == nil {
		t.Errorf("example parsed to %+v", c)
	}
}

func TestDefaults(t *testing.T) {
	c, err := config.Parse([]byte(minimal), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := c.Schedules[0]
	if c.Links.TTL != config.LinkTTLDefault || c.Ledger.Prefix != config.LedgerPrefixDefault ||
		s.Mode != "each" || s.Budget != 5*time.Minute || s.WaitTime != 20*time.Second || s.MaxMessages != 1000 || s.Concurrency != config.ConcurrencyDefault || c.Pacing.Replicas != 1 ||
		c.Recipients.Max != 10 || c.Log.Level != "info" ||
		c.Ledger.ClaimTimeout != worker.ClaimTimeoutDefault || c.Sender.RetryServerErrors ||
		c.Ledger.HistoryPrefix != config.LedgerPrefixDefault+"history/" || s.Paused {
		t.Errorf("defaults not applied: %+v %+v", c, s)
	}
}

func TestErrorsNameFieldAndValue(t *testing.T) {
	tests := []struct {
		name, yaml string
		env        []string
		want       string
	}{
		{"bad sender", `sender: {from: "not an address"}`, nil, `sender.from: "not an address" is not a valid address`},
		{"bad cron", `schedules: [{name: d, cron: "0 7 * *"}]`, nil, `schedules[0].cron: "0 7 * *" is not a cron spec`},
		{"bad zone", `schedules: [{name: d, time_zone: Mars/Olympus}]`, nil, `schedules[0].time_zone: "Mars/Olympus" is not an IANA time zone`},
		{"bad mode", `schedules: [{name: d, mode: hourly}]`, nil, `schedules[0].mode: "hourly" is not each or digest`},
		{"wait too long", `schedules: [{name: d, wait_time: 30s}]`, nil, `schedules[0].wait_time: 30s is not between 1s and 20s`},
		{"concurrency too high", `schedules: [{name: d, concurrency: 1000}]`, nil, `schedules[0].concurrency: 1000 is not between 1 and 256`},
		{"negative concurrency", `schedules: [{name: d, concurrency: -2}]`, nil, `schedules[0].concurrency: -2 is not between 1 and 256`},
		{"no replicas", `pacing: {replicas: -1}`, nil, `pacing.replicas: -1 is not between 1 and 1000`},
		{"digest visibility", `schedules: [{name: d, mode: digest, budget: 10m, visibility_timeout: 5m}]`, nil, `schedules[0].visibility_timeout: 5m0s must exceed the budget`},
		{"digest on @every", `schedules: [{name: d, mode: digest, cron: "@every 1h"}]`, nil, `schedules[0].cron: "@every 1h" cannot time a digest: an @every schedule counts from each replica's own start`},
		{"digest links", `schedules: [{name: d, mode: digest, max_links_per_email: -1}]`, nil, `schedules[0].max_links_per_email: -1 is less than 1`},
		{"digest ingest", `schedules: [{name: d, mode: digest, ingest_every: 2h}]`, nil, `schedules[0].ingest_every: 2h0m0s is not between 10s and 1h`},
		{"links on mode each", `schedules: [{name: d, max_links_per_email: 20}]`, nil, `schedules[0].max_links_per_email: 20 applies to mode digest only, and this schedule is mode each`},
		{"ingest on mode each", `schedules: [{name: d, mode: each, ingest_every: 5m}]`, nil, `schedules[0].ingest_every: 5m0s applies to mode digest only, and this schedule is mode each`},
		{"slot heartbeat", `ledger: {slot_heartbeat: 10m}`, nil, `ledger.slot_heartbeat: 10m0s is not between 1s and 5m`},
		{"duplicate name", `schedules: [{name: d}, {name: d}]`, nil, `schedules[1].name: "d" is used by an earlier schedule`},
		{"shared dead-letter queue", `schedules: [{name: a, queue_url: "https://sqs.eu-west-2.amazonaws.com/1/a", dead_letter_queue_url: "https://sqs.eu-west-2.amazonaws.com/1/dlq"}, {name: b, queue_url: "https://sqs.eu-west-2.amazonaws.com/1/b", dead_letter_queue_url: "https://sqs.eu-west-2.amazonaws.com/1/dlq"}]`, nil,
			`schedules[1].dead_letter_queue_url: "https://sqs.eu-west-2.amazonaws.com/1/dlq" is also schedules[0].dead_letter_queue_url`},
		{"shared dead-letter queue, spelt another way", `schedules: [{name: a, queue_url: "https://sqs.eu-west-2.amazonaws.com/1/a", dead_letter_queue_url: "https://sqs.eu-west-2.amazonaws.com/1/dlq"}, {name: b, queue_url: "https://sqs.eu-west-2.amazonaws.com/1/b", dead_letter_queue_url: "https://eu-west-2.queue.amazonaws.com/1/dlq/"}]`, nil,
			`schedules[1].dead_letter_queue_url: "https://eu-west-2.queue.amazonaws.com/1/dlq/" is also schedules[0].dead_letter_queue_url`},
		{"dead-letter queue is another schedule's queue", `schedules: [{name: a, queue_url: "https://sqs.eu-west-2.amazonaws.com/1/a", dead_letter_queue_url: "https://sqs.eu-west-2.amazonaws.com/1/b"}, {name: b, queue_url: "https://sqs.eu-west-2.amazonaws.com/1/b", dead_letter_queue_url: "https://sqs.eu-west-2.amazonaws.com/1/dlq"}]`, nil,
			`schedules[0].dead_letter_queue_url: "https://sqs.eu-west-2.amazonaws.com/1/b" is schedules[1].queue_url`},
		{"presign ttl", `links: {ttl: 200h}`, nil, `links.ttl: 200h0m0s is longer than the 7-day`},
		{"two key sources", `links: {cloudfront: {domain: "https://d.cloudfront.net", key_id: K, private_key_file: a, private_key_env: B}}`, nil, `links.cloudfront.private_key_file: "a" and private_key_env ("B"): set exactly one`},
		{"http cloudfront", `links: {cloudfront: {domain: "http://d.cloudfront.net", key_id: K, private_key_file: a}}`, nil, `links.cloudfront.domain: "http://d.cloudfront.net" must use https`},
		{"bad domain", `recipients: {allowed_domains: ["exa mple.com"]}`, nil, `recipients.allowed_domains[0]: "exa mple.com" is not a domain`},
		{"unknown field", `sender: {frm: x}`, nil, `field frm not found`},
		{"wrong type", `schedules: [{name: d, budget: soon}]`, nil, "soon"},
		{"env bad duration", minimal, []string{"REPORTMAILER_LINKS_TTL=forever"}, `environment REPORTMAILER_LINKS_TTL: "forever" is not a duration`},
		{"env typo", minimal, []string{"REPORTMAILER_SENDER_FORM=x@example.com"}, `environment REPORTMAILER_SENDER_FORM: no such setting`},
		{"no ledger", `sender: {from: a@example.com}`, nil, `ledger.bucket: "" is required`},
		{"claim timeout too short", `ledger: {bucket: state, claim_timeout: 500ms}`, nil, `ledger.claim_timeout: 500ms is shorter than 1s`},
		{"history outside the ledger prefix", `ledger: {bucket: state, prefix: rm/, history_prefix: runs/}`, nil, `ledger.history_prefix: "runs/" is not under ledger.prefix, which the declared IAM policy covers`},
		{"claim timeout negative", minimal, []string{"REPORTMAILER_LEDGER_CLAIM_TIMEOUT=-1m"}, `ledger.claim_timeout: -1m0s is shorter than 1s`},
		{"retry_server_errors not a bool", `sender: {from: a@example.com, retry_server_errors: sometimes}`, nil, "sometimes"},
		{"no reports bucket", `sender: {from: a@example.com}`, nil, `reports.bucket: "" is required: the bucket the reports are in`},
		{"bad reports bucket", `reports: {bucket: Acme_Reports}`, nil, `reports.bucket: "Acme_Reports" is not an S3 bucket name`},
		{"reports prefix with a slash", `reports: {bucket: acme, prefix: /exports/}`, nil, `reports.prefix: "/exports/" starts with "/", which S3 keys do not: write "exports/"`},
		{"bad origin path", `links: {cloudfront: {domain: "https://d.cloudfront.net", key_id: K, private_key_file: a, origin_path: "exports/"}}`, nil, `links.cloudfront.origin_path: "exports/" is not an origin path`},
		{"prefix outside the origin path", "reports: {bucket: acme, prefix: private/}\nlinks: {cloudfront: {domain: \"https://d.cloudfront.net\", key_id: K, private_key_file: a, origin_path: /exports}}", nil, `reports.prefix: "private/" is outside what the distribution serves, keys under "exports/"`},
		{"prefix outside the domain's path", "reports: {bucket: acme, prefix: private/}\nlinks: {cloudfront: {domain: \"https://d.cloudfront.net/reports\", key_id: K, private_key_file: a}}", nil, `reports.prefix: "private/" is outside what the distribution serves, keys under "reports/"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tt.yaml), tt.env)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

// TestSenderAddressesSESCanTake: sender.from and reply_to meet the rules
// every sent email's addresses meet, at config load. Before, a local
// part that is not ASCII passed config check, and every run then halted
// at its first email, since SES does not support SMTPUTF8. An
// internationalized domain is fine: it is sent in Punycode.
func TestSenderAddressesSESCanTake(t *testing.T) {
	rest := strings.Replace(minimal, `sender: {from: "Reports <reports@example.com>"}`, "", 1)
	tests := []struct {
		name, sender string
		env          []string
		want         string // "" for no error
	}{
		{"ASCII", `{from: "Reports <reports@example.com>", reply_to: [ops@example.com]}`, nil, ""},
		{"internationalized domain", `{from: "Société <reports@bücher.example>", reply_to: ["Zoë <ops@bücher.example>"]}`, nil, ""},
		{"domain already in Punycode", `{from: reports@xn--bcher-kva.example}`, nil, ""},
		{"from, local part not ASCII", `{from: "Zoë <zoë@example.com>"}`, nil,
			`sender.from: "Zoë <zoë@example.com>" has a local part, "zoë", that is not ASCII: SES does not support SMTPUTF8`},
		{"reply-to, local part not ASCII", `{from: reports@example.com, reply_to: [ops@example.com, "zoë@bücher.example"]}`, nil,
			`sender.reply_to[1]: "zoë@bücher.example" has a local part, "zoë", that is not ASCII`},
		{"from, bad Punycode", `{from: reports@xn--a.example}`, nil,
			`sender.from: "reports@xn--a.example" is not an address SES can take: domain "xn--a.example" is not a valid internationalized domain name`},
		{"from, from the environment", `{from: reports@example.com}`, []string{"REPORTMAILER_SENDER_FROM=élodie@example.com"},
			`sender.from: "élodie@example.com" has a local part, "élodie", that is not ASCII`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Parse([]byte("sender: "+tt.sender+"\n"+rest), tt.env)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("error = %v; want none", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("error = %v\nwant it to contain %q", err, tt.want)
			}
			if err == nil && strings.Contains(tt.sender, "bücher") && c.Sender.ListID != "reportmailer.xn--bcher-kva.example" {
				t.Errorf("sender.list_id = %q; want the default List-Id in Punycode", c.Sender.ListID)
			}
		})
	}
}

func TestEnvOverrides(t *testing.T) {
	c, err := config.Parse([]byte(minimal), []string{
		"REPORTMAILER_SENDER_FROM=ops@example.com",
		"REPORTMAILER_RECIPIENTS_ALLOWED_DOMAINS=example.com, *.example.org",
		"REPORTMAILER_SCHEDULES_DAILY_QUEUE_URL=http://127.0.0.1:9/q2",
		"REPORTMAILER_SCHEDULES_DAILY_BUDGET=90s",
		"REPORTMAILER_LINKS_CLOUDFRONT_DOMAIN=https://d.cloudfront.net",
		"REPORTMAILER_LINKS_CLOUDFRONT_KEY_ID=K1",
		"REPORTMAILER_LINKS_CLOUDFRONT_PRIVATE_KEY_ENV=CF_KEY",
		"REPORTMAILER_S3_USE_PATH_STYLE=true",
		"REPORTMAILER_CONFIG=/ignored.yaml",
		"OTHER=1",
	})
	if err != nil {
		t.Fatal(err)
	}
	s := c.Schedules[0]
	if c.Sender.From != "ops@example.com" || strings.Join(c.Recipients.AllowedDomains, "|") != "example.com|*.example.org" ||
		s.QueueURL != "http://127.0.0.1:9/q2" || s.Budget != 90*time.Second ||
		c.Links.CloudFront == nil || c.Links.CloudFront.KeyID != "K1" || !c.S3.UsePathStyle {
		t.Errorf("overrides not applied: %+v %+v %+v", c.Sender, s, c.Links.CloudFront)
	}
}

func TestLoadNamesTheFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "rm.yaml")
	os.WriteFile(p, []byte(`sender: {from: "x"}`), 0o600)
	_, err := config.Load(p)
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("error %v should name the file", err)
	}
}

func TestParseCronUsesTheScheduleZoneNotTheHosts(t *testing.T) {
	// The host's zone must not leak in, for UTC schedules too.
	saved := time.Local
	time.Local = time.FixedZone("HOST", -5*3600)
	t.Cleanup(func() { time.Local = saved })
	london, _ := time.LoadLocation("Europe/London")
	from := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		spec string
		loc  *time.Location
		want time.Time
	}{
		{"0 7 * * *", time.UTC, time.Date(2026, 11, 27, 7, 0, 0, 0, time.UTC)},
		{"0 7 * * *", london, time.Date(2026, 11, 27, 7, 0, 0, 0, time.UTC)}, // GMT in November
		{"CRON_TZ=Asia/Tokyo 0 7 * * *", time.UTC, time.Date(2026, 11, 26, 22, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		s, err := config.ParseCron(tt.spec, tt.loc)
		if err != nil {
			t.Fatal(err)
		}
		// The scheduler asks with the time in its own location, which is
		// the host's by default.
		if got := s.Next(from.In(time.Local)); !got.Equal(tt.want) {
			t.Errorf("%q in %s: next = %s, want %s", tt.spec, tt.loc, got.UTC(), tt.want)
		}
	}
}

func TestServedPrefix(t *testing.T) {
	tests := []struct {
		prefix, originPath, want string
	}{
		{"", "", ""},
		{"exports/", "", "exports/"},
		{"", "/exports", "exports/"},
		{"exports/2026/", "/exports", "exports/2026/"},
		{"exp", "/exports", "exports/"},
	}
	for _, tt := range tests {
		y := minimal + fmt.Sprintf("reports: {bucket: acme-reports, prefix: %q}\n", tt.prefix)
		if tt.originPath != "" {
			y += fmt.Sprintf("links: {cloudfront: {domain: \"https://d.cloudfront.net\", key_id: K, private_key_file: a, origin_path: %q}}\n", tt.originPath)
		}
		c, err := config.Parse([]byte(strings.Replace(y, "reports: {bucket: acme-reports}\n", "", 1)), nil)
		if err != nil {
			t.Fatalf("%+v: %v", tt, err)
		}
		if got := c.ServedPrefix(); got != tt.want {
			t.Errorf("prefix %q, origin path %q: ServedPrefix = %q, want %q", tt.prefix, tt.originPath, got, tt.want)
		}
	}
}
