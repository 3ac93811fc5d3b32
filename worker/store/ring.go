package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// RingStateName is the key ring's state object under the key-records
// prefix. Its name has a "/", so KeyExpiries.List, which reads key IDs
// from names, never takes it for a key's record.
const RingStateName = "ring/state.json"

// RingState is the key ring's shared state, kept in the state bucket:
// which keys sign from when, which are retired, and the rotation in
// progress. Every replica reads it (see link.LoadedRing), so a key
// scheduled here starts signing everywhere at the same moment.
type RingState struct {
	// Keys are the keys scheduled to sign, each from its ActivatesAt.
	Keys []RingStateKey `json:"keys,omitempty"`
	// Retired lists the keys whose public keys were removed from
	// CloudFront, by public key id only.
	Retired []RetiredKey `json:"retired,omitempty"`
	// Rotation is the rotation in progress, if any: `keys rotate` saves
	// each step here, so a rotation that stopped resumes where it was.
	Rotation *Rotation `json:"rotation,omitempty"`
	// Version is the schema version, 1.
	Version int `json:"version"`
}

// RingStateKey is a key of the ring.
type RingStateKey struct {
	// ID is the CloudFront public key id (Key-Pair-Id).
	ID string `json:"id"`
	// ActivatesAt is when the key starts signing.
	ActivatesAt time.Time `json:"activates_at"`
	// KMSKeyID is the KMS key's ARN, for a key in KMS.
	KMSKeyID string `json:"kms_key_id,omitempty"`
	// PrivateKeyFile is where `keys rotate -generate` wrote the private
	// key, for a file key: workers read it from that path unless their
	// config lists the key.
	PrivateKeyFile string `json:"private_key_file,omitempty"`
	// AddedAt is when the key was scheduled.
	AddedAt time.Time `json:"added_at"`
}

// RetiredKey is a key no longer trusted by the distribution.
type RetiredKey struct {
	ID        string    `json:"id"`
	RetiredAt time.Time `json:"retired_at"`
	// Forced is set when the key was retired before its safe-removal
	// date.
	Forced bool `json:"forced,omitempty"`
}

// Rotation is a rotation's progress: each field is set once its step
// is done.
type Rotation struct {
	StartedAt time.Time `json:"started_at"`
	// Kind is "kms", "ecdsa" or "rsa".
	Kind string `json:"kind"`
	// KMSKeyID or PrivateKeyFile: the new key (step 1).
	KMSKeyID       string `json:"kms_key_id,omitempty"`
	PrivateKeyFile string `json:"private_key_file,omitempty"`
	// KMSTaggedAt is when the KMS key was created with its tag: the
	// policies that grant by the tag may take minutes to allow it.
	KMSTaggedAt time.Time `json:"kms_tagged_at,omitempty"`
	// PublicKeyID is the new key's CloudFront public key (step 2).
	PublicKeyID string `json:"public_key_id,omitempty"`
	// KeyGroupID is the key group trusting the old keys and the new
	// one (step 2).
	KeyGroupID string `json:"key_group_id,omitempty"`
	// Trusted is set once the distribution trusts the key group (step 2).
	Trusted bool `json:"trusted,omitempty"`
	// Deployed is set once the distribution reported Deployed (step 2).
	Deployed bool `json:"deployed,omitempty"`
}

// Key returns the state's key id, or false.
func (s *RingState) Key(id string) (RingStateKey, bool) {
	i := slices.IndexFunc(s.Keys, func(k RingStateKey) bool { return k.ID == id })
	if i < 0 {
		return RingStateKey{}, false
	}
	return s.Keys[i], true
}

// IsRetired reports whether id is retired.
func (s *RingState) IsRetired(id string) bool {
	return slices.ContainsFunc(s.Retired, func(k RetiredKey) bool { return k.ID == id })
}

// RingStore reads and writes the RingState at Prefix + RingStateName in
// Bucket. Writes are conditional on the ETag read, so two operators
// rotating at once cannot lose each other's step.
type RingStore struct {
	Client KeysAPI
	Bucket string
	// Prefix is the key-records prefix, e.g. "reportmailer/keys/".
	Prefix string
}

func (r *RingStore) name() string { return r.Prefix + RingStateName }

// Load returns the state and its ETag; an empty state and "" when
// there is none yet.
func (r *RingStore) Load(ctx context.Context) (RingState, string, error) {
	name := r.name()
	out, err := r.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: &r.Bucket, Key: &name}, quietChecksums)
	if err != nil {
		if isNotFound(err) {
			return RingState{Version: 1}, "", nil
		}
		return RingState{}, "", fmt.Errorf("key ring s3://%s/%s: %w", r.Bucket, name, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, 1<<20))
	if err != nil {
		return RingState{}, "", fmt.Errorf("key ring s3://%s/%s: %w", r.Bucket, name, err)
	}
	var s RingState
	if err := json.Unmarshal(b, &s); err != nil {
		return RingState{}, "", fmt.Errorf("key ring s3://%s/%s is not a key ring state: %v", r.Bucket, name, err)
	}
	return s, aws.ToString(out.ETag), nil
}

// Save writes s if the stored state still has etag ("" for none yet),
// and returns the new ETag. A state changed meanwhile is an error: load
// it again.
func (r *RingStore) Save(ctx context.Context, s RingState, etag string) (string, error) {
	s.Version = 1
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return "", err
	}
	name := r.name()
	in := &s3.PutObjectInput{Bucket: &r.Bucket, Key: &name, Body: bytes.NewReader(b), ContentType: aws.String("application/json")}
	if etag == "" {
		in.IfNoneMatch = aws.String("*")
	} else {
		in.IfMatch = aws.String(etag)
	}
	out, err := r.Client.PutObject(ctx, in)
	if err != nil {
		if isPreconditionFailed(err) || isConditionalConflict(err) {
			return "", fmt.Errorf("key ring s3://%s/%s changed while this command ran (another rotation?); run it again: %w", r.Bucket, name, err)
		}
		return "", fmt.Errorf("key ring s3://%s/%s: %w", r.Bucket, name, err)
	}
	return aws.ToString(out.ETag), nil
}
