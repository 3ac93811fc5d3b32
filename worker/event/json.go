package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
)

// object is one JSON object, read field by field so that every error can
// name its exact path ("reports[2].key"), keys match exactly (encoding/json
// would let "ID" stand for "id"), and unknown fields are ignored but can
// be listed (see unknown). A key given twice keeps its last value, as
// with encoding/json.
type object struct {
	path   string // JSON path of the object itself; "" at the root
	fields map[string]json.RawMessage
}

// parseObject reads raw as a JSON object found at path. raw must already
// be valid JSON, as it is when it came from a parsed parent.
func parseObject(path string, raw json.RawMessage) (object, error) {
	var fields map[string]json.RawMessage
	if isNull(raw) || json.Unmarshal(raw, &fields) != nil {
		return object{}, invalid(path, string(raw), "is not a JSON object")
	}
	return object{path: path, fields: fields}, nil
}

// isNull reports whether raw is absent or the JSON null.
func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || bytes.Equal(raw, []byte("null"))
}

// name returns the JSON path of the object's field key.
func (o object) name(key string) string {
	if o.path == "" {
		return key
	}
	return o.path + "." + key
}

// index returns the JSON path of element i of the array at path.
func index(path string, i int) string {
	return fmt.Sprintf("%s[%d]", path, i)
}

// unknown returns, sorted, the paths of the object's fields that are
// not among known.
func (o object) unknown(known ...string) []string {
	var out []string
	for k := range o.fields {
		if !slices.Contains(known, k) {
			out = append(out, o.name(k))
		}
	}
	slices.Sort(out)
	return out
}

// has reports whether the field is present, even if null.
func (o object) has(key string) bool {
	_, ok := o.fields[key]
	return ok
}

// raw returns the field's JSON, or nil when it is absent or null.
func (o object) raw(key string) json.RawMessage {
	r := o.fields[key]
	if isNull(r) {
		return nil
	}
	return r
}

// str returns a string field; absent or null gives "".
func (o object) str(key string) (string, error) {
	r := o.raw(key)
	if r == nil {
		return "", nil
	}
	var s string
	if json.Unmarshal(r, &s) != nil {
		return "", invalid(o.name(key), string(r), "is not a string")
	}
	return s, nil
}

// integer returns an integer field and whether it was present and not null.
func (o object) integer(key string) (int64, bool, error) {
	r := o.raw(key)
	if r == nil {
		return 0, false, nil
	}
	var n int64
	if json.Unmarshal(r, &n) != nil {
		return 0, false, invalid(o.name(key), string(r), "is not an integer")
	}
	return n, true, nil
}

// array returns an array field's elements; absent or null gives nil.
func (o object) array(key string) ([]json.RawMessage, error) {
	r := o.raw(key)
	if r == nil {
		return nil, nil
	}
	var a []json.RawMessage
	if json.Unmarshal(r, &a) != nil {
		return nil, invalid(o.name(key), string(r), "is not an array")
	}
	return a, nil
}

// child returns a required object field.
func (o object) child(key string) (object, error) {
	r := o.raw(key)
	if r == nil {
		return object{}, missing(o.name(key))
	}
	return parseObject(o.name(key), r)
}
