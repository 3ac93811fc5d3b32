package config

import (
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/reportmailer/reportmailer/internal/secret"
)

// An empty file decodes to io.EOF, which is fine: everything may come
// from the environment.
var errEOF = io.EOF

// EnvPrefix starts every environment override.
const EnvPrefix = "REPORTMAILER_"

// EnvConfig names the config file when -config is not given. It is not
// an override.
const EnvConfig = "REPORTMAILER_CONFIG"

// ApplyEnv overrides fields from environ (KEY=VALUE pairs). A field's
// variable is EnvPrefix plus its YAML path in upper case, joined by "_":
// REPORTMAILER_SENDER_FROM, REPORTMAILER_LINKS_CLOUDFRONT_KEY_ID. A
// schedule's fields are addressed by its name, upper-cased with other
// characters turned to "_": REPORTMAILER_SCHEDULES_DAILY_QUEUE_URL; a
// CloudFront key's by its id: REPORTMAILER_LINKS_CLOUDFRONT_KEYS_K1_ACTIVE.
// Lists are comma-separated. Setting a CloudFront field creates the
// cloudfront section. A variable that names no field is an error, so a
// typo does not silently do nothing.
func ApplyEnv(c *Config, environ []string) error {
	vars := map[string]string{}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, EnvPrefix) && k != EnvConfig {
			vars[k] = v
		}
	}
	if len(vars) == 0 {
		return nil
	}
	if c.Links.CloudFront == nil {
		for k := range vars {
			if strings.HasPrefix(k, EnvPrefix+"LINKS_CLOUDFRONT_") {
				c.Links.CloudFront = &CloudFront{}
				break
			}
		}
	}
	used := map[string]bool{}
	if err := applyStruct(reflect.ValueOf(c).Elem(), strings.TrimSuffix(EnvPrefix, "_"), vars, used); err != nil {
		return err
	}
	for k := range vars {
		if !used[k] {
			return fmt.Errorf("environment %s: no such setting", k)
		}
	}
	return nil
}

var envNameRE = regexp.MustCompile(`[^A-Z0-9]`)

func applyStruct(v reflect.Value, prefix string, vars map[string]string, used map[string]bool) error {
	t := v.Type()
	for i := range t.NumField() {
		tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		name := prefix + "_" + strings.ToUpper(tag)
		f := v.Field(i)
		switch {
		case f.Kind() == reflect.Struct:
			if err := applyStruct(f, name, vars, used); err != nil {
				return err
			}
		case f.Kind() == reflect.Pointer && f.Type().Elem().Kind() == reflect.Struct:
			if !f.IsNil() {
				if err := applyStruct(f.Elem(), name, vars, used); err != nil {
					return err
				}
			}
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.Struct:
			for j := range f.Len() {
				id := envNameRE.ReplaceAllString(strings.ToUpper(elemName(f.Index(j))), "_")
				if id == "" {
					continue // cannot be addressed
				}
				if err := applyStruct(f.Index(j), name+"_"+id, vars, used); err != nil {
					return err
				}
			}
		default:
			s, ok := vars[name]
			if !ok {
				continue
			}
			used[name] = true
			if err := setScalar(f, s); err != nil {
				if secret.Redact(s) != s {
					return fmt.Errorf("environment %s: (holds key material, not shown) %v", name, err)
				}
				return fmt.Errorf("environment %s: %q %v", name, s, err)
			}
		}
	}
	return nil
}

// elemName is what addresses a list element from the environment: its
// Name (schedules) or its ID (CloudFront keys).
func elemName(v reflect.Value) string {
	for _, field := range []string{"Name", "ID"} {
		if f := v.FieldByName(field); f.IsValid() && f.Kind() == reflect.String {
			return f.String()
		}
	}
	return ""
}

func setScalar(f reflect.Value, s string) error {
	switch {
	case f.Type() == reflect.TypeOf(time.Duration(0)):
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("is not a duration like 90s or 5m")
		}
		f.SetInt(int64(d))
	case f.Kind() == reflect.String:
		f.SetString(s)
	case f.Kind() == reflect.Int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("is not a whole number")
		}
		f.SetInt(int64(n))
	case f.Kind() == reflect.Float64:
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("is not a number")
		}
		f.SetFloat(x)
	case f.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("is not true or false")
		}
		f.SetBool(b)
	case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.String:
		var items []string
		for _, it := range strings.Split(s, ",") {
			if it = strings.TrimSpace(it); it != "" {
				items = append(items, it)
			}
		}
		f.Set(reflect.ValueOf(items))
	default:
		return fmt.Errorf("cannot be set from the environment")
	}
	return nil
}
