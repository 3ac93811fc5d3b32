package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/config"
)

func TestHTTPSettings(t *testing.T) {
	const token = "s3cret-token-0123456789"
	tests := []struct {
		name string
		yaml string // appended to minimal
		env  []string
		err  string // "" means valid
		want config.HTTP
	}{
		{name: "defaults", want: config.HTTP{Addr: "127.0.0.1:9090", Refresh: time.Minute}},
		{name: "all interfaces, a token file", yaml: `http: {addr: ":9090", token_file: /run/secrets/token, refresh: 30s}`,
			want: config.HTTP{Addr: ":9090", TokenFile: "/run/secrets/token", Refresh: 30 * time.Second}},
		{name: "token from the environment", env: []string{"REPORTMAILER_HTTP_TOKEN=" + token},
			want: config.HTTP{Addr: "127.0.0.1:9090", Token: token, Refresh: time.Minute}},
		{name: "off", yaml: "http: {addr: off}", want: config.HTTP{Addr: "off", Refresh: time.Minute}},
		{name: "no port", yaml: "http: {addr: localhost}", err: `http.addr: "localhost" is not host:port`},
		{name: "token and file", yaml: "http: {token: " + token + ", token_file: /t}", err: "http.token: and http.token_file are both set"},
		{name: "short token", yaml: "http: {token: short}", err: "http.token: is shorter than 16 characters"},
		{name: "refresh too often", yaml: "http: {refresh: 1s}", err: "http.refresh: 1s is shorter than 5s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Parse([]byte(minimal+"\n"+tt.yaml+"\n"), tt.env)
			switch {
			case tt.err != "":
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				if strings.Contains(err.Error(), "short") && strings.Contains(err.Error(), `"short"`) {
					t.Errorf("the error quotes the token: %v", err)
				}
			case err != nil:
				t.Fatal(err)
			case c.HTTP != tt.want:
				t.Errorf("http = %+v, want %+v", c.HTTP, tt.want)
			}
		})
	}
}
