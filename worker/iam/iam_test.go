package iam

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// full is a config with everything on: CloudFront, a configuration set,
// two schedules.
var full = Inputs{
	Region:        "eu-west-2",
	Account:       "123456789012",
	ReportsBucket: "acme-reports", ReportsPrefix: "reports/",
	StateBucket: "acme-state", LedgerPrefix: "reportmailer/ledger/", KeyRecordsPrefix: "reportmailer/keys/",
	Queues: []QueuePair{
		{URL: "https://sqs.eu-west-2.amazonaws.com/123456789012/ready", DeadLetterURL: "https://sqs.eu-west-2.amazonaws.com/123456789012/ready-dlq"},
		{URL: "https://sqs.eu-west-2.amazonaws.com/123456789012/daily", DeadLetterURL: "https://sqs.eu-west-2.amazonaws.com/123456789012/daily-dlq"},
	},
	EventsQueueURL:   "https://sqs.eu-west-2.amazonaws.com/123456789012/ses-events",
	From:             "Reports <reports@Example.com>",
	ConfigurationSet: "reports",
	CloudFront:       true,
	DistributionID:   "E2EXAMPLE",
	AccessLogsBucket: "acme-cf-logs", AccessLogsPrefix: "reports/",
	KeyValueStoreARN: "arn:aws:cloudfront::123456789012:key-value-store/0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d",
}

const (
	queues     = "arn:aws:sqs:eu-west-2:123456789012:daily arn:aws:sqs:eu-west-2:123456789012:ready"
	dlqs       = "arn:aws:sqs:eu-west-2:123456789012:daily-dlq arn:aws:sqs:eu-west-2:123456789012:ready-dlq"
	identities = "arn:aws:ses:eu-west-2:123456789012:identity/example.com arn:aws:ses:eu-west-2:123456789012:identity/reports@example.com"
)

// stmt is a statement in a compact form for the tables: space-separated
// actions and resources, and the s3:prefix condition if any.
type stmt struct{ actions, resources, prefix string }

func compact(d Document) map[string]stmt {
	out := map[string]stmt{}
	for _, s := range d.Statement {
		c := stmt{actions: strings.Join(s.Action, " "), resources: strings.Join(s.Resource, " ")}
		if p := s.Condition["StringLike"]["s3:prefix"]; len(p) > 0 {
			c.prefix = strings.Join(p, " ")
		}
		out[s.Sid] = c
	}
	return out
}

func TestFor(t *testing.T) {
	drain := map[string]stmt{
		"Queues":           {"sqs:ChangeMessageVisibility sqs:DeleteMessage sqs:GetQueueAttributes sqs:ReceiveMessage", queues, ""},
		"DeadLetterQueues": {"sqs:GetQueueAttributes sqs:SendMessage", dlqs, ""},
		"SESEvents":        {"sqs:DeleteMessage sqs:ReceiveMessage", "arn:aws:sqs:eu-west-2:123456789012:ses-events", ""},
		"ReadReports":      {"s3:GetObject", "arn:aws:s3:::acme-reports/reports/*", ""},
		"ListReports":      {"s3:ListBucket", "arn:aws:s3:::acme-reports", "reports/*"},
		"Ledger":           {"s3:DeleteObject s3:GetObject s3:PutObject", "arn:aws:s3:::acme-state/reportmailer/ledger/*", ""},
		"ListLedger":       {"s3:ListBucket", "arn:aws:s3:::acme-state", "reportmailer/ledger/*"},
		"KeyRecords":       {"s3:GetObject s3:PutObject", "arn:aws:s3:::acme-state/reportmailer/keys/*", ""},
		"ListKeyRecords":   {"s3:ListBucket", "arn:aws:s3:::acme-state", "reportmailer/keys/*"},
		"SendingIdentity":  {"ses:SendEmail", identities, ""},
		"ConfigurationSet": {"ses:SendEmail", "arn:aws:ses:eu-west-2:123456789012:configuration-set/reports", ""},
		"SendQuota":        {"ses:GetAccount", "*", ""},
	}
	keys := map[string]stmt{
		"KeyRecords":     {"s3:GetObject", "arn:aws:s3:::acme-state/reportmailer/keys/*", ""},
		"ListKeyRecords": {"s3:ListBucket", "arn:aws:s3:::acme-state", "reportmailer/keys/*"},
	}
	check := map[string]stmt{
		"Queues":           {"sqs:GetQueueAttributes sqs:GetQueueUrl", queues, ""},
		"DeadLetterQueues": {"sqs:GetQueueAttributes sqs:GetQueueUrl", dlqs, ""},
		"ReadReports":      {"s3:GetObject", "arn:aws:s3:::acme-reports/reports/*", ""},
		"ListReports":      {"s3:ListBucket", "arn:aws:s3:::acme-reports", "reports/*"},
		"Ledger":           {"s3:DeleteObject s3:GetObject s3:PutObject", "arn:aws:s3:::acme-state/reportmailer/ledger/*", ""},
		"ListLedger":       {"s3:ListBucket", "arn:aws:s3:::acme-state", "reportmailer/ledger/*"},
		"KeyRecords":       {"s3:GetObject", "arn:aws:s3:::acme-state/reportmailer/keys/*", ""},
		"ListKeyRecords":   {"s3:ListBucket", "arn:aws:s3:::acme-state", "reportmailer/keys/*"},
		"SendingIdentity":  {"ses:GetEmailIdentity", identities, ""},
		"ConfigurationSet": {"ses:GetConfigurationSet", "arn:aws:ses:eu-west-2:123456789012:configuration-set/reports", ""},
		"SendQuota":        {"ses:GetAccount", "*", ""},
		"Distribution":     {"cloudfront:GetDistributionConfig", "arn:aws:cloudfront::123456789012:distribution/E2EXAMPLE", ""},
		"PublicKeys":       {"cloudfront:GetPublicKey", "*", ""},
	}
	noCloudFront := full
	noCloudFront.CloudFront, noCloudFront.ConfigurationSet = false, ""
	noEvents := full
	noEvents.EventsQueueURL = ""
	local := Inputs{
		Region: "us-east-1", ReportsBucket: "reports", StateBucket: "state",
		Queues: []QueuePair{{URL: "http://127.0.0.1:4566/000000000000/q"}}, From: "a@b.example",
	}

	tests := []struct {
		name string
		in   Inputs
		cmds []Command
		want map[string]stmt
	}{
		{"drain", full, []Command{Drain}, drain},
		{"serve is drain (leases live under the ledger prefix)", full, []Command{Serve}, drain},
		{"keys", full, []Command{Keys}, keys},
		{"check", full, []Command{Check}, check},
		{"offline commands need nothing", full, []Command{Preview, Sign, Verify, ConfigCheck}, map[string]stmt{}},
		{"keys without CloudFront reads nothing", noCloudFront, []Command{Keys}, map[string]stmt{}},
		{"drain without CloudFront or a configuration set", noCloudFront, []Command{Drain}, without(drain, "KeyRecords", "ListKeyRecords", "ConfigurationSet")},
		{"drain without SES events", noEvents, []Command{Drain}, without(drain, "SESEvents")},
		{"check does not read SES events", full, []Command{Check}, check},
		{"drain, serve, keys and check merge per resource", full, []Command{Drain, Serve, Keys, Check}, map[string]stmt{
			"Queues":           {"sqs:ChangeMessageVisibility sqs:DeleteMessage sqs:GetQueueAttributes sqs:GetQueueUrl sqs:ReceiveMessage", queues, ""},
			"DeadLetterQueues": {"sqs:GetQueueAttributes sqs:GetQueueUrl sqs:SendMessage", dlqs, ""},
			"SESEvents":        drain["SESEvents"],
			"ReadReports":      drain["ReadReports"],
			"ListReports":      drain["ListReports"],
			"Ledger":           drain["Ledger"],
			"ListLedger":       drain["ListLedger"],
			"KeyRecords":       drain["KeyRecords"],
			"ListKeyRecords":   drain["ListKeyRecords"],
			"SendingIdentity":  {"ses:GetEmailIdentity ses:SendEmail", identities, ""},
			"ConfigurationSet": {"ses:GetConfigurationSet ses:SendEmail", "arn:aws:ses:eu-west-2:123456789012:configuration-set/reports", ""},
			"SendQuota":        drain["SendQuota"],
			"Distribution":     check["Distribution"],
			"PublicKeys":       check["PublicKeys"],
		}},
		{"local stack, no prefixes, no account", local, []Command{Drain}, map[string]stmt{
			"Queues":          {"sqs:ChangeMessageVisibility sqs:DeleteMessage sqs:GetQueueAttributes sqs:ReceiveMessage", "arn:aws:sqs:us-east-1:000000000000:q", ""},
			"ReadReports":     {"s3:GetObject", "arn:aws:s3:::reports/*", ""},
			"ListReports":     {"s3:ListBucket", "arn:aws:s3:::reports", ""},
			"Ledger":          {"s3:DeleteObject s3:GetObject s3:PutObject", "arn:aws:s3:::state/*", ""},
			"ListLedger":      {"s3:ListBucket", "arn:aws:s3:::state", ""},
			"SendingIdentity": {"ses:SendEmail", "arn:aws:ses:us-east-1:*:identity/a@b.example arn:aws:ses:us-east-1:*:identity/b.example", ""},
			"SendQuota":       {"ses:GetAccount", "*", ""},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := For(tt.in, tt.cmds...)
			if d.Version != "2012-10-17" {
				t.Errorf("Version = %q", d.Version)
			}
			got := compact(d)
			for sid, w := range tt.want {
				if got[sid] != w {
					t.Errorf("statement %s:\n got %+v\nwant %+v", sid, got[sid], w)
				}
			}
			for sid := range got {
				if _, ok := tt.want[sid]; !ok {
					t.Errorf("unexpected statement %s: %+v", sid, got[sid])
				}
			}
			for _, s := range d.Statement {
				if s.Effect != "Allow" {
					t.Errorf("statement %s: Effect %q", s.Sid, s.Effect)
				}
			}
		})
	}
}

func without(m map[string]stmt, sids ...string) map[string]stmt {
	out := map[string]stmt{}
	for k, v := range m {
		out[k] = v
	}
	for _, s := range sids {
		delete(out, s)
	}
	return out
}

// TestForIsStable checks that the order of commands and queues does not
// change the bytes, and that statements come sorted by Sid.
func TestForIsStable(t *testing.T) {
	a, _ := json.Marshal(For(full, Drain, Check, Keys, Serve))
	reversed := full
	reversed.Queues = []QueuePair{full.Queues[1], full.Queues[0], full.Queues[0]}
	b, _ := json.Marshal(For(reversed, Serve, Keys, Check, Drain, Drain))
	if string(a) != string(b) {
		t.Fatalf("same inputs, different policies:\n%s\n%s", a, b)
	}
	d := For(full, Drain, Check)
	for i := 1; i < len(d.Statement); i++ {
		if d.Statement[i-1].Sid >= d.Statement[i].Sid {
			t.Fatalf("statements not sorted: %s before %s", d.Statement[i-1].Sid, d.Statement[i].Sid)
		}
	}
}

// TestForAllowsWhatTheWorkerCalls evaluates the drain policy against the
// calls the worker makes, and against calls it must not be able to make.
func TestForAllowsWhatTheWorkerCalls(t *testing.T) {
	d := For(full, Drain)
	queue, dlq := "arn:aws:sqs:eu-west-2:123456789012:ready", "arn:aws:sqs:eu-west-2:123456789012:ready-dlq"
	events := "arn:aws:sqs:eu-west-2:123456789012:ses-events"
	prefix := func(p string) map[string]string { return map[string]string{"s3:prefix": p} }
	tests := []struct {
		name             string
		action, resource string
		ctx              map[string]string
		want             bool
	}{
		{"receive", "sqs:ReceiveMessage", queue, nil, true},
		{"delete a batch", "sqs:DeleteMessage", queue, nil, true},
		{"release a batch", "sqs:ChangeMessageVisibility", queue, nil, true},
		{"dead-letter", "sqs:SendMessage", dlq, nil, true},
		{"send to the source queue", "sqs:SendMessage", queue, nil, false},
		{"receive from the DLQ", "sqs:ReceiveMessage", dlq, nil, false},
		{"purge", "sqs:PurgeQueue", queue, nil, false},
		{"read SES events", "sqs:ReceiveMessage", events, nil, true},
		{"delete a settled SES event", "sqs:DeleteMessage", events, nil, true},
		{"send to the SES events queue", "sqs:SendMessage", events, nil, false},
		{"hide an SES event", "sqs:ChangeMessageVisibility", events, nil, false},
		{"head a report", "s3:GetObject", "arn:aws:s3:::acme-reports/reports/2026/q3.pdf", nil, true},
		{"a missing report answers 404", "s3:ListBucket", "arn:aws:s3:::acme-reports", prefix("reports/2026/q3.pdf"), true},
		{"a report outside the prefix", "s3:GetObject", "arn:aws:s3:::acme-reports/private/x.pdf", nil, false},
		{"a report in another bucket", "s3:GetObject", "arn:aws:s3:::other/reports/x.pdf", nil, false},
		{"overwrite a report", "s3:PutObject", "arn:aws:s3:::acme-reports/reports/x.pdf", nil, false},
		{"list the whole reports bucket", "s3:ListBucket", "arn:aws:s3:::acme-reports", nil, false},
		{"claim", "s3:PutObject", "arn:aws:s3:::acme-state/reportmailer/ledger/abc", nil, true},
		{"read a claim", "s3:GetObject", "arn:aws:s3:::acme-state/reportmailer/ledger/abc", nil, true},
		{"a released claim answers 404", "s3:ListBucket", "arn:aws:s3:::acme-state", prefix("reportmailer/ledger/abc"), true},
		{"release", "s3:DeleteObject", "arn:aws:s3:::acme-state/reportmailer/ledger/abc", nil, true},
		{"slot lease", "s3:PutObject", "arn:aws:s3:::acme-state/reportmailer/ledger/slots/daily/2026-11-27T07:00:00Z", nil, true},
		{"record a halt", "s3:PutObject", "arn:aws:s3:::acme-state/reportmailer/ledger/halt.json", nil, true},
		{"read the halt record", "s3:GetObject", "arn:aws:s3:::acme-state/reportmailer/ledger/halt.json", nil, true},
		{"no halt record answers 404", "s3:ListBucket", "arn:aws:s3:::acme-state", prefix("reportmailer/ledger/halt.json"), true},
		{"key record", "s3:PutObject", "arn:aws:s3:::acme-state/reportmailer/keys/K1.json", nil, true},
		{"no key record yet answers 404", "s3:ListBucket", "arn:aws:s3:::acme-state", prefix("reportmailer/keys/K1.json"), true},
		{"delete a key record", "s3:DeleteObject", "arn:aws:s3:::acme-state/reportmailer/keys/K1.json", nil, false},
		{"elsewhere in the state bucket", "s3:GetObject", "arn:aws:s3:::acme-state/other", nil, false},
		{"send as the address", "ses:SendEmail", "arn:aws:ses:eu-west-2:123456789012:identity/reports@example.com", nil, true},
		{"send as the domain", "ses:SendEmail", "arn:aws:ses:eu-west-2:123456789012:identity/example.com", nil, true},
		{"send as another domain", "ses:SendEmail", "arn:aws:ses:eu-west-2:123456789012:identity/evil.example", nil, false},
		{"send in another region", "ses:SendEmail", "arn:aws:ses:us-east-1:123456789012:identity/example.com", nil, false},
		{"quota", "ses:GetAccount", "*", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := d.Allows(tt.action, tt.resource, tt.ctx); got != tt.want {
				t.Errorf("%s on %s (%v): allowed %v, want %v", tt.action, tt.resource, tt.ctx, got, tt.want)
			}
		})
	}
}

func TestForEscapesPrefixes(t *testing.T) {
	in := full
	in.ReportsPrefix = "odd*dir/"
	d := For(in, Drain)
	if !d.Allows("s3:GetObject", "arn:aws:s3:::acme-reports/odd*dir/a.pdf", nil) {
		t.Error("a report under the literal prefix is refused")
	}
	if d.Allows("s3:GetObject", "arn:aws:s3:::acme-reports/oddXXdir/a.pdf", nil) {
		t.Error("a '*' in the prefix acts as a wildcard")
	}
}

func TestInputsCheck(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Inputs)
		cmds []Command
		err  string
	}{
		{"full", func(*Inputs) {}, []Command{Drain, Serve, Keys, Check}, ""},
		{"no reports bucket", func(in *Inputs) { in.ReportsBucket = "" }, []Command{Drain}, "ReportsBucket"},
		{"no state bucket", func(in *Inputs) { in.StateBucket = "" }, []Command{Serve}, "StateBucket"},
		{"keys needs the state bucket", func(in *Inputs) { in.StateBucket = "" }, []Command{Keys}, "StateBucket"},
		{"keys needs no reports bucket", func(in *Inputs) { in.ReportsBucket = "" }, []Command{Keys}, ""},
		{"no queues", func(in *Inputs) { in.Queues = nil }, []Command{Check}, "no queues"},
		{"bad sender", func(in *Inputs) { in.From = "reports" }, []Command{Drain}, `From "reports"`},
		{"bad queue URL", func(in *Inputs) { in.Queues = []QueuePair{{URL: "ready"}} }, []Command{Drain}, `"ready"`},
		{"bad DLQ URL", func(in *Inputs) {
			in.Queues = []QueuePair{{URL: full.Queues[0].URL, DeadLetterURL: "http://127.0.0.1/1/x"}}
		}, []Command{Drain}, "http://127.0.0.1/1/x"},
		{"bad events queue URL", func(in *Inputs) { in.EventsQueueURL = "ses-events" }, []Command{Drain}, `"ses-events"`},
		{"offline commands need nothing", func(in *Inputs) { *in = Inputs{} }, []Command{Preview, Sign}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := full
			in.Queues = append([]QueuePair(nil), full.Queues...)
			tt.edit(&in)
			err := in.Check(tt.cmds...)
			if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Fatalf("Check = %v, want %q", err, tt.err)
			}
		})
	}
}

func TestParseCommands(t *testing.T) {
	got, err := ParseCommands(" drain,serve,,drain ,check")
	if err != nil || !reflect.DeepEqual(got, []Command{Drain, Serve, Check}) {
		t.Fatalf("ParseCommands = %v, %v", got, err)
	}
	if _, err := ParseCommands("drain,rewind"); err == nil || !strings.Contains(err.Error(), `"rewind"`) || !strings.Contains(err.Error(), "drain, serve") {
		t.Fatalf("unknown command: %v", err)
	}
	if _, err := ParseCommands(""); err == nil {
		t.Fatal("an empty list is an error")
	}
}

func TestSenderIdentities(t *testing.T) {
	a, d, ok := SenderIdentities(`"Acme Reports" <Reports@Mail.Example.COM>`)
	if !ok || a != "Reports@mail.example.com" || d != "mail.example.com" {
		t.Fatalf("SenderIdentities = %q, %q, %v", a, d, ok)
	}
	if _, _, ok := SenderIdentities("not an address"); ok {
		t.Fatal("a non-address has no identity")
	}
	// SES identities are ASCII: an internationalized domain is the
	// identity's Punycode form, as the email is sent.
	a, d, ok = SenderIdentities("Société <Reports@Bücher.Example>")
	if !ok || a != "Reports@xn--bcher-kva.example" || d != "xn--bcher-kva.example" {
		t.Fatalf("SenderIdentities = %q, %q, %v; want the domain in Punycode", a, d, ok)
	}
	if _, _, ok := SenderIdentities("reports@xn--a.example"); ok {
		t.Fatal("a domain that is not a valid internationalized name has no identity")
	}
	doc := For(Inputs{Region: "eu-west-1", Account: "123456789012", ReportsBucket: "reports", StateBucket: "state",
		From: "Reports <reports@bücher.example>"}, Drain, Check)
	b, _ := json.Marshal(doc)
	for _, want := range []string{
		"arn:aws:ses:eu-west-1:123456789012:identity/reports@xn--bcher-kva.example",
		"arn:aws:ses:eu-west-1:123456789012:identity/xn--bcher-kva.example",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("policy lacks %s:\n%s", want, b)
		}
	}
	if strings.Contains(string(b), "bücher") {
		t.Errorf("policy names the Unicode domain, which no SES identity has:\n%s", b)
	}
}

// TestListStatement: the s3:ListBucket statement a fix quotes is, byte
// for byte, the one For puts in the policy for that store.
func TestListStatement(t *testing.T) {
	in := Inputs{Region: "eu-west-1", Account: "123456789012", ReportsBucket: "reports", ReportsPrefix: "exports/",
		StateBucket: "state", LedgerPrefix: "reportmailer/ledger/", KeyRecordsPrefix: "reportmailer/keys/", CloudFront: true,
		Queues: []QueuePair{{URL: "https://sqs.eu-west-1.amazonaws.com/123456789012/q"}}, From: "reports@example.com"}
	policy, _ := json.Marshal(For(in, Drain, Check))
	tests := []struct {
		store          Store
		bucket, prefix string
		want           string
	}{
		{StoreReports, "reports", "exports/", `{"Sid":"ListReports","Effect":"Allow","Action":["s3:ListBucket"],"Resource":["arn:aws:s3:::reports"],"Condition":{"StringLike":{"s3:prefix":["exports/*"]}}}`},
		{StoreLedger, "state", "reportmailer/ledger/", `{"Sid":"ListLedger","Effect":"Allow","Action":["s3:ListBucket"],"Resource":["arn:aws:s3:::state"],"Condition":{"StringLike":{"s3:prefix":["reportmailer/ledger/*"]}}}`},
		{StoreKeyRecords, "state", "reportmailer/keys/", `{"Sid":"ListKeyRecords","Effect":"Allow","Action":["s3:ListBucket"],"Resource":["arn:aws:s3:::state"],"Condition":{"StringLike":{"s3:prefix":["reportmailer/keys/*"]}}}`},
	}
	for _, tt := range tests {
		b, _ := json.Marshal(ListStatement(in.Region, tt.store, tt.bucket, tt.prefix))
		if string(b) != tt.want {
			t.Errorf("ListStatement(%v, %s, %s) = %s\nwant %s", tt.store, tt.bucket, tt.prefix, b, tt.want)
		}
		if !strings.Contains(string(policy), string(b)) {
			t.Errorf("the policy For declares lacks %s:\n%s", b, policy)
		}
	}
	b, _ := json.Marshal(ListStatement("cn-north-1", StoreReports, "reports", ""))
	if want := `{"Sid":"ListReports","Effect":"Allow","Action":["s3:ListBucket"],"Resource":["arn:aws-cn:s3:::reports"]}`; string(b) != want {
		t.Errorf("no prefix, China partition: %s\nwant %s", b, want)
	}
}
