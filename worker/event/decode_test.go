package event

import (
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// nativeBody is the example from docs/events.md.
const nativeBody = `{"version":1,"type":"report.ready","id":"evt-2026-11-26-0001",
 "user":{"id":"u-42","email":"ana@example.com","name":"Ana Lima","locale":"pt-BR","time_zone":"America/Sao_Paulo"},
 "recipients":["cfo@example.com"],
 "reports":[{"bucket":"acme-reports","key":"2026/11/Q3 results+notes.pdf","title":"Q3 results","type":"finance","size":48213,"content_type":"application/pdf"}]}`

var nativeEvent = Event{
	ID: "evt-2026-11-26-0001",
	User: User{
		ID:       "u-42",
		Email:    "ana@example.com",
		Name:     "Ana Lima",
		Locale:   "pt-BR",
		TimeZone: "America/Sao_Paulo",
	},
	Recipients: []string{"cfo@example.com"},
	Reports: []Report{{
		Bucket:      "acme-reports",
		Key:         "2026/11/Q3 results+notes.pdf",
		Title:       "Q3 results",
		Type:        "finance",
		Size:        48213,
		ContentType: "application/pdf",
	}},
}

// s3Body is the S3 notification example from docs/events.md.
const s3Body = `{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"eu-west-1",
 "eventTime":"2026-11-26T09:30:00.123Z","eventName":"ObjectCreated:Put",
 "s3":{"s3SchemaVersion":"1.0","configurationId":"report-ready",
  "bucket":{"name":"acme-reports","arn":"arn:aws:s3:::acme-reports"},
  "object":{"key":"2026/11/Q3+results%2Bnotes.pdf","size":48213,"eTag":"9b2cf535f27731c974343645a3985328","sequencer":"0067A1B2C3D4E5F601"}}}]}`

var s3Ref = ObjectRef{
	Bucket:    "acme-reports",
	Key:       "2026/11/Q3 results+notes.pdf",
	Size:      48213,
	ETag:      "9b2cf535f27731c974343645a3985328",
	Sequencer: "0067A1B2C3D4E5F601",
	EventName: "ObjectCreated:Put",
	EventTime: time.Date(2026, 11, 26, 9, 30, 0, 123e6, time.UTC),
}

const testEventBody = `{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-26T09:00:00.000Z","Bucket":"acme-reports","RequestId":"5582815E1AEA5ADF","HostId":"8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"}`

// sns wraps message in an SNS envelope, as SNS delivers it to SQS
// without raw message delivery.
func sns(message string) string {
	env := map[string]any{
		"Type":             "Notification",
		"MessageId":        "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
		"TopicArn":         "arn:aws:sns:eu-west-1:123456789012:report-ready",
		"Subject":          "Amazon S3 Notification",
		"Message":          message,
		"Timestamp":        "2026-11-26T09:30:00.456Z",
		"SignatureVersion": "1",
		"Signature":        "EXAMPLE",
		"SigningCertURL":   "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-EXAMPLE.pem",
		"UnsubscribeURL":   "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe&EXAMPLE",
	}
	b, err := json.Marshal(env)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// native returns nativeBody after edit has changed its decoded form;
// a field set to nil in edit is deleted.
func native(t *testing.T, edit func(e, user, report map[string]any)) string {
	t.Helper()
	var e map[string]any
	if err := json.Unmarshal([]byte(nativeBody), &e); err != nil {
		t.Fatal(err)
	}
	user := e["user"].(map[string]any)
	report := e["reports"].([]any)[0].(map[string]any)
	edit(e, user, report)
	for _, m := range []map[string]any{e, user, report} {
		for k, v := range m {
			if v == nil {
				delete(m, k)
			}
		}
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// record returns a one-record S3 notification for the object key (as
// encoded in the notification) with edit applied to the record.
func record(t *testing.T, key string, edit func(rec, object map[string]any)) string {
	t.Helper()
	var n map[string]any
	if err := json.Unmarshal([]byte(s3Body), &n); err != nil {
		t.Fatal(err)
	}
	rec := n["Records"].([]any)[0].(map[string]any)
	obj := rec["s3"].(map[string]any)["object"].(map[string]any)
	obj["key"] = key
	if edit != nil {
		edit(rec, obj)
	}
	b, err := json.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDecode(t *testing.T) {
	minimal := Event{
		ID:   "e1",
		User: User{ID: "u1", Email: "u@example.com"},
		Reports: []Report{{
			Bucket: "b-1.example",
			Key:    "dir/sub/file name.csv",
			Title:  "file name.csv",
		}},
	}
	second := s3Ref
	second.Key = "2026/11/other.pdf"
	second.Sequencer = "0067A1B2C3D4E5F602"

	tests := []struct {
		name string
		body string
		want Decoded
	}{
		{
			name: "native",
			body: nativeBody,
			want: Decoded{Events: []Event{nativeEvent}},
		},
		{
			name: "native minimal, title from key",
			body: `{"version":1,"type":"report.ready","id":"e1","user":{"id":"u1","email":"u@example.com"},
				"reports":[{"bucket":"b-1.example","key":"dir/sub/file name.csv"}]}`,
			want: Decoded{Events: []Event{minimal}},
		},
		{
			name: "native nulls are absent",
			body: `{"version":1,"type":"report.ready","id":"e1","user":{"id":"u1","email":"u@example.com","name":null,"locale":null,"time_zone":null},
				"recipients":null,"reports":[{"bucket":"b-1.example","key":"dir/sub/file name.csv","title":null,"size":null}]}`,
			want: Decoded{Events: []Event{minimal}},
		},
		{
			name: "native unknown fields ignored and listed",
			body: `{"version":1,"type":"report.ready","id":"e1","priority":"high","trace":{"id":[1,2]},
				"user":{"id":"u1","email":"u@example.com","plan":"pro"},
				"reports":[{"bucket":"b-1.example","key":"dir/sub/file name.csv","checksum":"abc"}]}`,
			want: Decoded{Events: []Event{minimal}, Unknown: []string{"priority", "reports[0].checksum", "trace", "user.plan"}},
		},
		{
			// The misspellings a producer makes: the value is ignored, so
			// the email goes out in UTC to the user alone, and the path
			// says why.
			name: "native misspelt fields at every level",
			body: native(t, func(e, u, r map[string]any) {
				u["timezone"] = u["time_zone"]
				delete(u, "time_zone")
				e["recipient"] = e["recipients"]
				delete(e, "recipients")
				e["Version"] = 1
				r["contentType"] = r["content_type"]
				delete(r, "content_type")
				u["Email"] = "other@example.com"
			}),
			want: Decoded{Events: []Event{func() Event {
				e := nativeEvent
				e.User.TimeZone = ""
				e.Recipients = nil
				e.Reports = []Report{nativeEvent.Reports[0]}
				e.Reports[0].ContentType = ""
				return e
			}()}, Unknown: []string{"Version", "recipient", "reports[0].contentType", "user.Email", "user.timezone"}},
		},
		{
			name: "native in SNS lists the event's unknown fields, not the envelope's",
			body: func() string {
				b, _ := json.Marshal(map[string]any{"Type": "Notification", "MessageId": "m-1", "TopicArn": "arn:aws:sns:eu-west-1:1:t",
					"Message": strings.Replace(nativeBody, `"time_zone"`, `"timezone"`, 1), "Timestamp": "2026-11-26T09:30:00.000Z",
					"SignatureVersion": "1", "Signature": "x", "SigningCertURL": "https://sns", "UnsubscribeURL": "https://sns",
					"MessageAttributes": map[string]any{"a": map[string]string{"Type": "String", "Value": "v"}}, "NewSNSField": true})
				return string(b)
			}(),
			want: Decoded{Events: []Event{func() Event {
				e := nativeEvent
				e.User.TimeZone = ""
				return e
			}()}, Unknown: []string{"user.timezone"}},
		},
		{
			name: "native invalid extra recipients kept for the policy step",
			body: native(t, func(e, _, _ map[string]any) {
				e["recipients"] = []any{"cfo@example.com", "bob@@x", "Eve <eve@example.com>", "", "a@b.com\r\nBcc: x@y.com"}
			}),
			want: Decoded{Events: []Event{func() Event {
				e := nativeEvent
				e.Recipients = []string{"cfo@example.com", "bob@@x", "Eve <eve@example.com>", "", "a@b.com\r\nBcc: x@y.com"}
				return e
			}()}},
		},
		{
			name: "native 100 reports",
			body: native(t, func(e, _, r map[string]any) {
				reports := make([]any, 100)
				for i := range reports {
					reports[i] = r
				}
				e["reports"] = reports
			}),
			want: Decoded{Events: []Event{func() Event {
				e := nativeEvent
				e.Reports = make([]Report, 100)
				for i := range e.Reports {
					e.Reports[i] = nativeEvent.Reports[0]
				}
				return e
			}()}},
		},
		{
			name: "native in SNS",
			body: sns(nativeBody),
			want: Decoded{Events: []Event{nativeEvent}},
		},
		{
			name: "S3 notification",
			body: s3Body,
			want: Decoded{Objects: []ObjectRef{s3Ref}},
		},
		{
			name: "S3 notification in SNS",
			body: sns(s3Body),
			want: Decoded{Objects: []ObjectRef{s3Ref}},
		},
		{
			name: "S3 notification with two records",
			body: `{"Records":[
				{"eventVersion":"2.1","eventSource":"aws:s3","eventTime":"2026-11-26T09:30:00.123Z","eventName":"ObjectCreated:Put",
				 "s3":{"bucket":{"name":"acme-reports"},"object":{"key":"2026/11/Q3+results%2Bnotes.pdf","size":48213,"eTag":"9b2cf535f27731c974343645a3985328","sequencer":"0067A1B2C3D4E5F601"}}},
				{"eventVersion":"2.1","eventSource":"aws:s3","eventTime":"2026-11-26T09:30:00.123Z","eventName":"ObjectCreated:Put",
				 "s3":{"bucket":{"name":"acme-reports"},"object":{"key":"2026/11/other.pdf","size":48213,"eTag":"9b2cf535f27731c974343645a3985328","sequencer":"0067A1B2C3D4E5F602"}}}]}`,
			want: Decoded{Objects: []ObjectRef{s3Ref, second}},
		},
		{
			// S3 adds fields to its notifications over time (glacier and
			// replication data, new ids): none of them is a warning.
			name: "S3 notification with fields S3 may add",
			body: sns(strings.NewReplacer(
				`"eventVersion":"2.1",`, `"eventVersion":"2.3","glacierEventData":{"restoreEventData":{}},"userIdentity":{"principalId":"p"},"requestParameters":{"sourceIPAddress":"1.2.3.4"},"responseElements":{"x-amz-request-id":"r"},`,
				`"sequencer":"0067A1B2C3D4E5F601"`, `"sequencer":"0067A1B2C3D4E5F601","versionId":"v1","checksumAlgorithm":"CRC64NVME"`,
				`"arn":"arn:aws:s3:::acme-reports"`, `"arn":"arn:aws:s3:::acme-reports","ownerIdentity":{"principalId":"p"}`,
			).Replace(s3Body)),
			want: Decoded{Objects: []ObjectRef{s3Ref}},
		},
		{
			name: "S3 notification minimal",
			body: `{"Records":[{"eventName":"ObjectCreated:CompleteMultipartUpload","s3":{"bucket":{"name":"acme-reports"},"object":{"key":"k","eTag":"abc"}}}]}`,
			want: Decoded{Objects: []ObjectRef{{Bucket: "acme-reports", Key: "k", ETag: "abc", EventName: "ObjectCreated:CompleteMultipartUpload"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode([]byte(tt.body))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Decode:\n got %+v\nwant %+v", got, tt.want)
			}
			for _, e := range got.Events {
				if err := checkEvent(e); err != nil {
					t.Errorf("event breaks an invariant: %v", err)
				}
			}
		})
	}
}

func TestDecodeKey(t *testing.T) {
	tests := []struct {
		name    string
		encoded string
		want    string
	}{
		{"plus is a space", "a+b.pdf", "a b.pdf"},
		{"encoded plus", "a%2Bb.pdf", "a+b.pdf"},
		{"encoded space", "a%20b.pdf", "a b.pdf"},
		{"non-ASCII", "%E6%97%A5.pdf", "日.pdf"},
		{"percent", "100%25.csv", "100%.csv"},
		{"slashes kept", "2026/11/Q3+results%2Bnotes.pdf", "2026/11/Q3 results+notes.pdf"},
		{"question and hash", "a%3Fb%23c.pdf", "a?b#c.pdf"},
		{"plain", "report.pdf", "report.pdf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, body := range []string{record(t, tt.encoded, nil), sns(record(t, tt.encoded, nil))} {
				got, err := Decode([]byte(body))
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if len(got.Objects) != 1 || got.Objects[0].Key != tt.want {
					t.Fatalf("Decode key %q: got %+v, want key %q", tt.encoded, got.Objects, tt.want)
				}
			}
		})
	}
}

func TestDecodeTestEvent(t *testing.T) {
	tests := []struct {
		name string
		body string
	}{
		{"direct", testEventBody},
		{"in SNS", sns(testEventBody)},
		{"minimal", `{"Service":"Amazon S3","Event":"s3:TestEvent"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode([]byte(tt.body))
			if !errors.Is(err, ErrTestEvent) {
				t.Fatalf("Decode: got %v, want ErrTestEvent", err)
			}
			var fe *FieldError
			if errors.As(err, &fe) {
				t.Errorf("the test event is also a *FieldError: %v", err)
			}
			if !reflect.DeepEqual(got, Decoded{}) {
				t.Errorf("Decode returned %+v with the test event", got)
			}
		})
	}
}

// TestDecodeInvalid checks that each bad body gives a *FieldError on the
// right field, whose message quotes the bad value.
func TestDecodeInvalid(t *testing.T) {
	long := strings.Repeat("x", 300)
	tests := []struct {
		name  string
		body  string
		field string
		value string // must appear quoted in the message; "" for none
	}{
		// Garbage.
		{"empty", ``, "body", ""},
		{"blank", " \n\t", "body", " \n\t"},
		{"not JSON", `hello`, "body", "hello"},
		{"truncated JSON", `{"version":1`, "body", `{"version":1`},
		{"trailing garbage", `{"version":1} x`, "body", `{"version":1} x`},
		{"array", `[]`, "body", "[]"},
		{"string", `"report"`, "body", `"report"`},
		{"number", `42`, "body", "42"},
		{"null", `null`, "body", "null"},
		{"empty object", `{}`, "body", "{}"},
		{"unknown object", `{"hello":"world"}`, "body", `{"hello":"world"}`},
		{"invalid UTF-8", "{\"version\":1,\"id\":\"\xff\"}", "body", "{\"version\":1,\"id\":\"\xff\"}"},
		{"mixed forms", `{"version":1,"Records":[]}`, "body", `{"version":1,"Records":[]}`},
		{"wrong-case keys are not native", `{"Version":1,"ID":"e1"}`, "body", `{"Version":1,"ID":"e1"}`},

		// Native: envelope fields.
		{"version missing", native(t, func(e, _, _ map[string]any) { e["version"] = nil }), "version", ""},
		{"version 2", native(t, func(e, _, _ map[string]any) { e["version"] = 2 }), "version", "2"},
		{"version 0", native(t, func(e, _, _ map[string]any) { e["version"] = 0 }), "version", "0"},
		{"version string", native(t, func(e, _, _ map[string]any) { e["version"] = "1" }), "version", `"1"`},
		{"version fraction", native(t, func(e, _, _ map[string]any) { e["version"] = 1.5 }), "version", "1.5"},
		{"type missing", native(t, func(e, _, _ map[string]any) { e["type"] = nil }), "type", ""},
		{"type other", native(t, func(e, _, _ map[string]any) { e["type"] = "report.failed" }), "type", "report.failed"},
		{"type not string", native(t, func(e, _, _ map[string]any) { e["type"] = 7 }), "type", "7"},
		{"id missing", native(t, func(e, _, _ map[string]any) { e["id"] = nil }), "id", ""},
		{"id empty", native(t, func(e, _, _ map[string]any) { e["id"] = "" }), "id", ""},
		{"id too long", native(t, func(e, _, _ map[string]any) { e["id"] = strings.Repeat("i", 257) }), "id", strings.Repeat("i", 100)},
		{"id newline", native(t, func(e, _, _ map[string]any) { e["id"] = "evt\n1" }), "id", "evt\n1"},
		{"id reserved prefix", native(t, func(e, _, _ map[string]any) { e["id"] = "s3:acme/k@1" }), "id", "s3:acme/k@1"},
		{"id not string", native(t, func(e, _, _ map[string]any) { e["id"] = 12 }), "id", "12"},

		// Native: user.
		{"user missing", native(t, func(e, _, _ map[string]any) { e["user"] = nil }), "user", ""},
		{"user not object", native(t, func(e, _, _ map[string]any) { e["user"] = "ana" }), "user", `"ana"`},
		{"user.id missing", native(t, func(_, u, _ map[string]any) { u["id"] = nil }), "user.id", ""},
		{"user.id control", native(t, func(_, u, _ map[string]any) { u["id"] = "u\x0042" }), "user.id", "u\x0042"},
		{"user.email missing", native(t, func(_, u, _ map[string]any) { u["email"] = nil }), "user.email", ""},
		{"user.email double at", native(t, func(_, u, _ map[string]any) { u["email"] = "bob@@x" }), "user.email", "bob@@x"},
		{"user.email display name", native(t, func(_, u, _ map[string]any) { u["email"] = "Ana <ana@example.com>" }), "user.email", "Ana <ana@example.com>"},
		{"user.email angle brackets", native(t, func(_, u, _ map[string]any) { u["email"] = "<ana@example.com>" }), "user.email", "<ana@example.com>"},
		{"user.email two addresses", native(t, func(_, u, _ map[string]any) { u["email"] = "ana@example.com, bob@example.com" }), "user.email", "ana@example.com, bob@example.com"},
		{"user.email CRLF", native(t, func(_, u, _ map[string]any) { u["email"] = "ana@example.com\r\nBcc: eve@example.com" }), "user.email", "ana@example.com\r\nBcc: eve@example.com"},
		{"user.email spaces", native(t, func(_, u, _ map[string]any) { u["email"] = " ana@example.com" }), "user.email", " ana@example.com"},
		{"user.email no domain", native(t, func(_, u, _ map[string]any) { u["email"] = "ana" }), "user.email", "ana"},
		{"user.email not string", native(t, func(_, u, _ map[string]any) { u["email"] = []any{"ana@example.com"} }), "user.email", `["ana@example.com"]`},
		{"user.email non-ASCII local part", native(t, func(_, u, _ map[string]any) { u["email"] = "zoë@example.com" }), "user.email", "zoë@example.com"},
		{"user.email invalid IDN", native(t, func(_, u, _ map[string]any) { u["email"] = "ana@bücher-.example" }), "user.email", "ana@bücher-.example"},
		{"user.name newline", native(t, func(_, u, _ map[string]any) { u["name"] = "Ana\nBcc: x" }), "user.name", "Ana\nBcc: x"},
		{"user.locale underscore", native(t, func(_, u, _ map[string]any) { u["locale"] = "pt_BR" }), "user.locale", "pt_BR"},
		{"user.locale too long", native(t, func(_, u, _ map[string]any) { u["locale"] = "en-" + strings.Repeat("abcdefg-", 5) + "x" }), "user.locale", "en-abcdefg-"},
		{"user.locale digit language", native(t, func(_, u, _ map[string]any) { u["locale"] = "12-BR" }), "user.locale", "12-BR"},
		{"user.locale empty subtag", native(t, func(_, u, _ map[string]any) { u["locale"] = "pt--BR" }), "user.locale", "pt--BR"},
		{"user.locale long subtag", native(t, func(_, u, _ map[string]any) { u["locale"] = "pt-abcdefghi" }), "user.locale", "pt-abcdefghi"},
		{"user.time_zone unknown", native(t, func(_, u, _ map[string]any) { u["time_zone"] = "Mars/Olympus_Mons" }), "user.time_zone", "Mars/Olympus_Mons"},
		{"user.time_zone Local", native(t, func(_, u, _ map[string]any) { u["time_zone"] = "Local" }), "user.time_zone", "Local"},
		{"user.time_zone path", native(t, func(_, u, _ map[string]any) { u["time_zone"] = "../../etc/passwd" }), "user.time_zone", "../../etc/passwd"},
		{"user.time_zone abbreviation with space", native(t, func(_, u, _ map[string]any) { u["time_zone"] = "GMT +3" }), "user.time_zone", "GMT +3"},
		{"user.time_zone empty segment", native(t, func(_, u, _ map[string]any) { u["time_zone"] = "America//Sao_Paulo" }), "user.time_zone", "America//Sao_Paulo"},

		// Native: recipients.
		{"recipients not array", native(t, func(e, _, _ map[string]any) { e["recipients"] = "cfo@example.com" }), "recipients", `"cfo@example.com"`},
		{"recipients element null", native(t, func(e, _, _ map[string]any) { e["recipients"] = []any{"cfo@example.com", nil} }), "recipients[1]", "null"},
		{"recipients element not string", native(t, func(e, _, _ map[string]any) { e["recipients"] = []any{"cfo@example.com", 5} }), "recipients[1]", "5"},

		// Native: reports.
		{"reports missing", native(t, func(e, _, _ map[string]any) { e["reports"] = nil }), "reports", ""},
		{"reports empty", native(t, func(e, _, _ map[string]any) { e["reports"] = []any{} }), "reports", ""},
		{"reports 101", native(t, func(e, _, r map[string]any) {
			reports := make([]any, 101)
			for i := range reports {
				reports[i] = r
			}
			e["reports"] = reports
		}), "reports", ""},
		{"reports not array", native(t, func(e, _, _ map[string]any) { e["reports"] = map[string]any{} }), "reports", "{}"},
		{"reports element not object", native(t, func(e, _, r map[string]any) { e["reports"] = []any{r, "x"} }), "reports[1]", `"x"`},
		{"reports element null", native(t, func(e, _, r map[string]any) { e["reports"] = []any{r, nil} }), "reports[1]", "null"},
		{"reports[2].key empty", native(t, func(e, _, r map[string]any) {
			bad := map[string]any{"bucket": "acme-reports", "key": ""}
			e["reports"] = []any{r, r, bad}
		}), "reports[2].key", ""},
		{"reports[0].key missing", native(t, func(_, _, r map[string]any) { r["key"] = nil }), "reports[0].key", ""},
		{"reports[0].key too long", native(t, func(_, _, r map[string]any) { r["key"] = strings.Repeat("k", 1025) }), "reports[0].key", strings.Repeat("k", 100)},
		{"reports[0].key control", native(t, func(_, _, r map[string]any) { r["key"] = "a\x7fb.pdf" }), "reports[0].key", "a\x7fb.pdf"},
		{"reports[0].key tab", native(t, func(_, _, r map[string]any) { r["key"] = "a\tb.pdf" }), "reports[0].key", "a\tb.pdf"},
		{"reports[0].key C1 control", native(t, func(_, _, r map[string]any) { r["key"] = "a\u0085b.pdf" }), "reports[0].key", "a\u0085b.pdf"},
		{"reports[0].bucket missing", native(t, func(_, _, r map[string]any) { r["bucket"] = nil }), "reports[0].bucket", ""},
		{"reports[0].bucket upper case", native(t, func(_, _, r map[string]any) { r["bucket"] = "Acme-Reports" }), "reports[0].bucket", "Acme-Reports"},
		{"reports[0].bucket short", native(t, func(_, _, r map[string]any) { r["bucket"] = "ab" }), "reports[0].bucket", "ab"},
		{"reports[0].bucket long", native(t, func(_, _, r map[string]any) { r["bucket"] = strings.Repeat("b", 64) }), "reports[0].bucket", strings.Repeat("b", 64)},
		{"reports[0].bucket underscore", native(t, func(_, _, r map[string]any) { r["bucket"] = "acme_reports" }), "reports[0].bucket", "acme_reports"},
		{"reports[0].bucket leading hyphen", native(t, func(_, _, r map[string]any) { r["bucket"] = "-acme" }), "reports[0].bucket", "-acme"},
		{"reports[0].bucket trailing dot", native(t, func(_, _, r map[string]any) { r["bucket"] = "acme." }), "reports[0].bucket", "acme."},
		{"reports[0].bucket double dot", native(t, func(_, _, r map[string]any) { r["bucket"] = "acme..reports" }), "reports[0].bucket", "acme..reports"},
		{"reports[0].bucket IP", native(t, func(_, _, r map[string]any) { r["bucket"] = "192.168.5.4" }), "reports[0].bucket", "192.168.5.4"},
		{"reports[0].bucket path", native(t, func(_, _, r map[string]any) { r["bucket"] = "acme/reports" }), "reports[0].bucket", "acme/reports"},
		{"reports[0].size negative", native(t, func(_, _, r map[string]any) { r["size"] = -1 }), "reports[0].size", "-1"},
		{"reports[0].size fraction", native(t, func(_, _, r map[string]any) { r["size"] = 1.5 }), "reports[0].size", "1.5"},
		{"reports[0].size string", native(t, func(_, _, r map[string]any) { r["size"] = "10" }), "reports[0].size", `"10"`},
		{"reports[0].title control", native(t, func(_, _, r map[string]any) { r["title"] = "Q3\r\nresults" }), "reports[0].title", "Q3\r\nresults"},
		{"reports[0].title too long", native(t, func(_, _, r map[string]any) { r["title"] = long + long + long + long }), "reports[0].title", long[:100]},
		{"reports[0].type control", native(t, func(_, _, r map[string]any) { r["type"] = "fin\x00" }), "reports[0].type", "fin\x00"},
		{"reports[0].content_type newline", native(t, func(_, _, r map[string]any) { r["content_type"] = "text/html\nX: y" }), "reports[0].content_type", "text/html\nX: y"},

		// Native in SNS: the field names are the native ones.
		{"SNS native user.email", sns(native(t, func(_, u, _ map[string]any) { u["email"] = "bob@@x" })), "user.email", "bob@@x"},

		// S3 notification.
		{"Records empty", `{"Records":[]}`, "Records", ""},
		{"Records null", `{"Records":null}`, "Records", ""},
		{"Records not array", `{"Records":{}}`, "Records", "{}"},
		{"Records element not object", `{"Records":[1]}`, "Records[0]", "1"},
		{"eventName removed", record(t, "k", func(rec, _ map[string]any) { rec["eventName"] = "ObjectRemoved:Delete" }), "Records[0].eventName", "ObjectRemoved:Delete"},
		{"eventName restore", record(t, "k", func(rec, _ map[string]any) { rec["eventName"] = "ObjectRestore:Completed" }), "Records[0].eventName", "ObjectRestore:Completed"},
		{"eventName missing", record(t, "k", func(rec, _ map[string]any) { delete(rec, "eventName") }), "Records[0].eventName", ""},
		{"eventName prefix only", record(t, "k", func(rec, _ map[string]any) { rec["eventName"] = "ObjectCreated" }), "Records[0].eventName", "ObjectCreated"},
		{"eventSource other", record(t, "k", func(rec, _ map[string]any) { rec["eventSource"] = "minio:s3" }), "Records[0].eventSource", "minio:s3"},
		{"eventVersion 3", record(t, "k", func(rec, _ map[string]any) { rec["eventVersion"] = "3.0" }), "Records[0].eventVersion", "3.0"},
		{"eventTime bad", record(t, "k", func(rec, _ map[string]any) { rec["eventTime"] = "yesterday" }), "Records[0].eventTime", "yesterday"},
		{"s3 missing", record(t, "k", func(rec, _ map[string]any) { delete(rec, "s3") }), "Records[0].s3", ""},
		{"bucket missing", record(t, "k", func(rec, _ map[string]any) { delete(rec["s3"].(map[string]any), "bucket") }), "Records[0].s3.bucket", ""},
		{"bucket name invalid", record(t, "k", func(rec, _ map[string]any) {
			rec["s3"].(map[string]any)["bucket"] = map[string]any{"name": "Bad_Bucket"}
		}), "Records[0].s3.bucket.name", "Bad_Bucket"},
		{"object missing", record(t, "k", func(rec, _ map[string]any) { delete(rec["s3"].(map[string]any), "object") }), "Records[0].s3.object", ""},
		{"key empty", record(t, "", nil), "Records[0].s3.object.key", ""},
		{"key bad escape", record(t, "a%zz.pdf", nil), "Records[0].s3.object.key", "a%zz.pdf"},
		{"key truncated escape", record(t, "a%2", nil), "Records[0].s3.object.key", "a%2"},
		{"key decodes to invalid UTF-8", record(t, "%FF.pdf", nil), "Records[0].s3.object.key", "%FF.pdf"},
		{"key decodes to control", record(t, "a%0Ab.pdf", nil), "Records[0].s3.object.key", "a%0Ab.pdf"},
		{"key decodes too long", record(t, strings.Repeat("%41", 1025), nil), "Records[0].s3.object.key", "%41%41"},
		{"size negative", record(t, "k", func(_, obj map[string]any) { obj["size"] = -5 }), "Records[0].s3.object.size", "-5"},
		{"size string", record(t, "k", func(_, obj map[string]any) { obj["size"] = "5" }), "Records[0].s3.object.size", `"5"`},
		{"no sequencer or eTag", record(t, "k", func(_, obj map[string]any) { delete(obj, "sequencer"); delete(obj, "eTag") }), "Records[0].s3.object.sequencer", ""},
		{"sequencer control", record(t, "k", func(_, obj map[string]any) { obj["sequencer"] = "00\n67" }), "Records[0].s3.object.sequencer", "00\n67"},
		{"second record bad", `{"Records":[
			{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"acme-reports"},"object":{"key":"a","eTag":"1"}}},
			{"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"acme-reports"},"object":{"key":"b","eTag":"2"}}}]}`,
			"Records[1].eventName", "ObjectRemoved:Delete"},
		{"SNS eventName removed", sns(record(t, "k", func(rec, _ map[string]any) { rec["eventName"] = "ObjectRemoved:Delete" })), "Records[0].eventName", "ObjectRemoved:Delete"},

		// Test event look-alikes.
		{"other S3 event", `{"Service":"Amazon S3","Event":"s3:Other"}`, "Event", "s3:Other"},
		{"test event other service", `{"Service":"Amazon SQS","Event":"s3:TestEvent"}`, "Service", "Amazon SQS"},
		{"test event no service", `{"Event":"s3:TestEvent"}`, "Service", ""},

		// SNS envelope.
		{"SNS subscription confirmation", `{"Type":"SubscriptionConfirmation","Message":"You have chosen to subscribe"}`, "Type", "SubscriptionConfirmation"},
		{"SNS message missing", `{"Type":"Notification","MessageId":"1"}`, "Message", ""},
		{"SNS message not string", `{"Type":"Notification","Message":{"Records":[]}}`, "Message", `{"Records":[]}`},
		{"SNS message not JSON", sns("hello"), "Message", "hello"},
		{"SNS message unknown form", sns(`{"a":1}`), "Message", `{"a":1}`},
		{"SNS in SNS", sns(sns(s3Body)), "Message", `{"Message":`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode([]byte(tt.body))
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Decode: got %v (%T), want a *FieldError", err, err)
			}
			if errors.Is(err, ErrTestEvent) {
				t.Errorf("a *FieldError is also ErrTestEvent")
			}
			if !reflect.DeepEqual(got, Decoded{}) {
				t.Errorf("Decode returned %+v with an error", got)
			}
			if fe.Field != tt.field {
				t.Errorf("Field = %q, want %q (error %q)", fe.Field, tt.field, err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, tt.field+": ") {
				t.Errorf("message %q does not start with the field %q", msg, tt.field)
			}
			if tt.value != "" {
				quoted := strings.TrimSuffix(strings.TrimPrefix(strconv.Quote(tt.value), `"`), `"`)
				if !strings.Contains(msg, quoted) {
					t.Errorf("message %q does not quote the value %q", msg, tt.value)
				}
			}
			if fe.Reason == "" {
				t.Errorf("no reason in %q", msg)
			}
			if len(msg) > 600 {
				t.Errorf("message is %d bytes long: %q", len(msg), msg)
			}
		})
	}
}

func TestFieldErrorMessage(t *testing.T) {
	tests := []struct {
		name string
		err  FieldError
		want string
	}{
		{
			name: "value",
			err:  FieldError{Field: "user.email", Value: "bob@@x", Reason: "is not a valid address"},
			want: `user.email: "bob@@x" is not a valid address`,
		},
		{
			name: "no value",
			err:  FieldError{Field: "user.id", Reason: "is required"},
			want: `user.id: is required`,
		},
		{
			name: "control characters quoted",
			err:  FieldError{Field: "id", Value: "a\r\nb", Reason: "contains a character that is not printable"},
			want: `id: "a\r\nb" contains a character that is not printable`,
		},
		{
			name: "long value truncated",
			err:  FieldError{Field: "body", Value: strings.Repeat("z", 1<<20), Reason: "is not JSON"},
			want: `body: "` + strings.Repeat("z", 100) + `"... (1048576 bytes) is not JSON`,
		},
		{
			name: "truncated at a rune boundary",
			err:  FieldError{Field: "body", Value: strings.Repeat("z", 99) + "日本", Reason: "is not JSON"},
			want: `body: "` + strings.Repeat("z", 99) + `"... (105 bytes) is not JSON`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() =\n %q\nwant\n %q", got, tt.want)
			}
		})
	}
}

func TestDecodeHugeBody(t *testing.T) {
	body := `{"version":1,"type":"report.ready","id":"` + strings.Repeat("x", 1<<20) + `"}`
	_, err := Decode([]byte(body))
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "id" {
		t.Fatalf("Decode: got %v, want a *FieldError on id", err)
	}
	if len(err.Error()) > 200 {
		t.Errorf("message is %d bytes long", len(err.Error()))
	}
	_, err = Decode([]byte(strings.Repeat("garbage ", 1<<17)))
	if !errors.As(err, &fe) || fe.Field != "body" || len(err.Error()) > 300 {
		t.Errorf("Decode of garbage: got %v", err)
	}
}
