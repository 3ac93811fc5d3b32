package devstack

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/http"
	"net/mail"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The sending quota GetAccount reports until SetSendQuota changes it.
const (
	sesMax24HourSend = 50000
	sesMaxSendRate   = 14
)

// maxSendEmailBody bounds a SendEmail request: SES takes messages of up to
// 40 MB, which base64 inflates by a third.
const maxSendEmailBody = 64 << 20

// SentEmail is one email the SES endpoint accepted.
//
// For Simple content the fields are what the request said. For Raw content
// Raw holds the MIME message; From, To and Cc come from the request when it
// sets them and from the message's headers otherwise, and Subject, HTML,
// Text and Headers are read from the message as far as it parses (the
// first text/html and text/plain parts; no charset conversion). Bcc only
// ever comes from the request.
type SentEmail struct {
	MessageID        string            `json:"messageId"`
	From             string            `json:"from"`
	To               []string          `json:"to,omitempty"`
	Cc               []string          `json:"cc,omitempty"`
	Bcc              []string          `json:"bcc,omitempty"`
	ReplyTo          []string          `json:"replyTo,omitempty"`
	Subject          string            `json:"subject"`
	HTML             string            `json:"html,omitempty"`
	Text             string            `json:"text,omitempty"`
	Headers          map[string]string `json:"headers,omitempty"` // custom headers (Simple) or the message's top-level headers (Raw)
	Tags             map[string]string `json:"tags,omitempty"`    // EmailTags
	ConfigurationSet string            `json:"configurationSet,omitempty"`
	Raw              []byte            `json:"raw,omitempty"` // the MIME message, for Raw content only
	At               time.Time         `json:"at"`
}

// clone returns a copy of e that shares no memory with it, so callers of
// Sent cannot change what the stack recorded.
func (e SentEmail) clone() SentEmail {
	e.To = slices.Clone(e.To)
	e.Cc = slices.Clone(e.Cc)
	e.Bcc = slices.Clone(e.Bcc)
	e.ReplyTo = slices.Clone(e.ReplyTo)
	e.Headers = maps.Clone(e.Headers)
	e.Tags = maps.Clone(e.Tags)
	e.Raw = slices.Clone(e.Raw)
	return e
}

// sesServer implements the part of the SES v2 REST-JSON API the worker uses,
// plus GET /store to read back what was sent.
type sesServer struct {
	logger *slog.Logger

	mu          sync.Mutex
	emails      []SentEmail
	maxSendRate float64
	max24h      float64
	lean        bool // keep no bodies (Stack.KeepBodies)
}

func newSESServer(logger *slog.Logger) *sesServer {
	return &sesServer{logger: logger, maxSendRate: sesMaxSendRate, max24h: sesMax24HourSend}
}

func (s *sesServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v2/email/outbound-emails":
		s.sendEmail(w, r)
	case r.Method == http.MethodGet && r.URL.Path == "/v2/email/account":
		s.getAccount(w)
	case r.Method == http.MethodGet && r.URL.Path == "/store":
		s.store(w, r)
	default:
		writeSESError(w, http.StatusNotFound, "UnknownOperationException",
			fmt.Sprintf("devstack ses: no operation for %s %s", r.Method, r.URL.Path))
	}
}

// sent returns a copy of the emails accepted at or after since.
func (s *sesServer) sent(since time.Time) []SentEmail {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SentEmail, 0, len(s.emails))
	for _, e := range s.emails {
		if !e.At.Before(since) {
			out = append(out, e.clone())
		}
	}
	return out
}

// sendEmailRequest is the SendEmail input, as much of it as is kept.
type sendEmailRequest struct {
	FromEmailAddress string
	Destination      *struct {
		ToAddresses  []string
		CcAddresses  []string
		BccAddresses []string
	}
	ReplyToAddresses []string
	Content          struct {
		Simple *struct {
			Subject *sesContent
			Body    struct {
				Html *sesContent
				Text *sesContent
			}
			Headers []nameValue
		}
		Raw *struct {
			Data []byte // base64 in the JSON
		}
		Template json.RawMessage
	}
	EmailTags            []nameValue
	ConfigurationSetName string
}

type sesContent struct {
	Data    string
	Charset string
}

type nameValue struct {
	Name  string
	Value string
}

func (s *sesServer) sendEmail(w http.ResponseWriter, r *http.Request) {
	var req sendEmailRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxSendEmailBody)).Decode(&req); err != nil {
		writeSESError(w, http.StatusBadRequest, "BadRequestException", "devstack ses: decode request: "+err.Error())
		return
	}
	e, err := newSentEmail(&req)
	if err != nil {
		writeSESError(w, http.StatusBadRequest, "BadRequestException", "devstack ses: "+err.Error())
		return
	}

	s.mu.Lock()
	e.MessageID = newMessageID()
	e.At = time.Now()
	if s.lean {
		e.HTML, e.Text, e.Raw = "", "", nil
	}
	s.emails = append(s.emails, e)
	s.mu.Unlock()

	s.logger.Info("email accepted", "message_id", e.MessageID, "from", e.From,
		"to", e.To, "cc", e.Cc, "bcc", e.Bcc, "subject", e.Subject)
	writeJSON(w, http.StatusOK, map[string]string{"MessageId": e.MessageID})
}

// newSentEmail checks req the way SES would and turns it into a SentEmail.
func newSentEmail(req *sendEmailRequest) (SentEmail, error) {
	e := SentEmail{
		From:             req.FromEmailAddress,
		ReplyTo:          req.ReplyToAddresses,
		ConfigurationSet: req.ConfigurationSetName,
	}
	if d := req.Destination; d != nil {
		e.To, e.Cc, e.Bcc = d.ToAddresses, d.CcAddresses, d.BccAddresses
	}
	for _, t := range req.EmailTags {
		if e.Tags == nil {
			e.Tags = make(map[string]string)
		}
		e.Tags[t.Name] = t.Value
	}

	c := req.Content
	switch {
	case c.Simple != nil:
		if e.From == "" {
			return e, errors.New("simple content without FromEmailAddress")
		}
		if len(e.To)+len(e.Cc)+len(e.Bcc) == 0 {
			return e, errors.New("no recipients in Destination")
		}
		if c.Simple.Subject == nil || c.Simple.Subject.Data == "" {
			return e, errors.New("simple content without Subject")
		}
		if c.Simple.Body.Html == nil && c.Simple.Body.Text == nil {
			return e, errors.New("simple content without an Html or Text body")
		}
		e.Subject = c.Simple.Subject.Data
		if b := c.Simple.Body.Html; b != nil {
			e.HTML = b.Data
		}
		if b := c.Simple.Body.Text; b != nil {
			e.Text = b.Data
		}
		for _, h := range c.Simple.Headers {
			if e.Headers == nil {
				e.Headers = make(map[string]string)
			}
			e.Headers[h.Name] = h.Value
		}
	case c.Raw != nil:
		if len(c.Raw.Data) == 0 {
			return e, errors.New("raw content without Data")
		}
		e.Raw = c.Raw.Data
		readRaw(&e)
		if e.From == "" {
			return e, errors.New("raw content without a From header or FromEmailAddress")
		}
	case len(c.Template) > 0:
		return e, errors.New("template content is not supported")
	default:
		return e, errors.New("content is neither Simple nor Raw")
	}
	return e, nil
}

// readRaw fills in what the request left unset from the MIME message in
// e.Raw. A message that does not parse is still accepted, as SES would.
func readRaw(e *SentEmail) {
	msg, err := mail.ReadMessage(bytes.NewReader(e.Raw))
	if err != nil {
		return
	}
	var dec mime.WordDecoder
	decode := func(v string) string {
		if d, err := dec.DecodeHeader(v); err == nil {
			return d
		}
		return v
	}
	addresses := func(key string) []string {
		list, err := msg.Header.AddressList(key)
		if err != nil {
			return nil
		}
		out := make([]string, 0, len(list))
		for _, a := range list {
			// Name <address>, unquoted: this is for reading, and it
			// matches how Simple senders usually write addresses.
			if a.Name == "" {
				out = append(out, a.Address)
			} else {
				out = append(out, a.Name+" <"+a.Address+">")
			}
		}
		return out
	}

	if e.From == "" {
		if from := addresses("From"); len(from) > 0 {
			e.From = from[0]
		}
	}
	if len(e.To) == 0 {
		e.To = addresses("To")
	}
	if len(e.Cc) == 0 {
		e.Cc = addresses("Cc")
	}
	if len(e.ReplyTo) == 0 {
		e.ReplyTo = addresses("Reply-To")
	}
	e.Subject = decode(msg.Header.Get("Subject"))
	e.Headers = make(map[string]string, len(msg.Header))
	for k, v := range msg.Header {
		if len(v) > 0 {
			e.Headers[k] = decode(v[0])
		}
	}
	e.HTML, e.Text = readBodies(msg.Header.Get("Content-Type"),
		msg.Header.Get("Content-Transfer-Encoding"), msg.Body, 0)
}

// readBodies returns the first text/html and text/plain parts of a MIME
// entity that are not attachments, decoding their transfer encoding.
func readBodies(contentType, encoding string, body io.Reader, depth int) (html, text string) {
	mediaType, params, err := mime.ParseMediaType(contentType)
	if contentType == "" || err != nil {
		mediaType = "text/plain"
	}
	if strings.HasPrefix(mediaType, "multipart/") {
		if depth > 10 || params["boundary"] == "" {
			return "", ""
		}
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err != nil {
				return html, text
			}
			if d, _, _ := mime.ParseMediaType(p.Header.Get("Content-Disposition")); d == "attachment" {
				continue
			}
			h, t := readBodies(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p, depth+1)
			if html == "" {
				html = h
			}
			if text == "" {
				text = t
			}
		}
	}
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "base64":
		body = base64.NewDecoder(base64.StdEncoding, newlineStripper{body})
	case "quoted-printable":
		body = quotedprintable.NewReader(body)
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return "", ""
	}
	switch mediaType {
	case "text/html":
		return string(b), ""
	case "text/plain":
		return "", string(b)
	}
	return "", ""
}

// newlineStripper drops CR and LF, which base64 bodies wrap lines with.
type newlineStripper struct{ r io.Reader }

func (n newlineStripper) Read(p []byte) (int, error) {
	for {
		c, err := n.r.Read(p)
		j := 0
		for _, b := range p[:c] {
			if b != '\r' && b != '\n' {
				p[j] = b
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}

func (s *sesServer) getAccount(w http.ResponseWriter) {
	since := time.Now().Add(-24 * time.Hour)
	n := len(s.sent(since))
	s.mu.Lock()
	rate, max24h := s.maxSendRate, s.max24h
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"DedicatedIpAutoWarmupEnabled": false,
		"EnforcementStatus":            "HEALTHY",
		"ProductionAccessEnabled":      true,
		"SendingEnabled":               true,
		"SendQuota": map[string]any{
			"Max24HourSend":   max24h,
			"MaxSendRate":     rate,
			"SentLast24Hours": n,
		},
	})
}

// store answers GET /store[?since=<epoch-seconds>] with
// {"emails":[SentEmail...]}, oldest first. since is inclusive, as in
// aws-ses-v2-local.
func (s *sesServer) store(w http.ResponseWriter, r *http.Request) {
	var since time.Time
	if v := r.URL.Query().Get("since"); v != "" {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			writeSESError(w, http.StatusBadRequest, "BadRequestException", "devstack ses: since must be epoch seconds")
			return
		}
		since = time.Unix(secs, 0)
	}
	writeJSON(w, http.StatusOK, map[string]any{"emails": s.sent(since)})
}

// writeSESError writes an error the way AWS REST-JSON services do, so the
// SDK reports typ as the error code.
func writeSESError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("X-Amzn-ErrorType", typ)
	writeJSON(w, status, map[string]string{"__type": typ, "message": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-RequestId", newRequestID())
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// newMessageID returns an id shaped like the ones SES returns.
func newMessageID() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return "0100" + h[:12] + "-" + h[12:20] + "-" + h[20:24] + "-" + h[24:28] + "-" + h[28:32] + "-" + h[32:44] + "-000000"
}

func newRequestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
