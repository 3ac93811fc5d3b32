package config_test

import (
	"strings"
	"testing"

	"github.com/reportmailer/reportmailer/config"
)

// schedules writes a config with one schedule per name.
func schedules(names ...string) string {
	y := "sender: {from: a@example.com}\nreports: {bucket: reports}\nledger: {bucket: state}\nschedules:\n"
	for _, n := range names {
		y += "  - {name: \"" + n + "\", queue_url: \"https://sqs.eu-west-2.amazonaws.com/1/" + n + "\", dead_letter_queue_url: \"https://sqs.eu-west-2.amazonaws.com/1/" + n + "-dlq\"}\n"
	}
	return y
}

// TestEnvNamesCannotCollide: two settings that one environment variable
// would both set make the config invalid, whether or not the variable
// is set, so that an override can never silently change two schedules.
func TestEnvNamesCannotCollide(t *testing.T) {
	cfKeys := func(ids ...string) string {
		y := schedules("daily") + "links:\n  cloudfront:\n    domain: https://d.cloudfront.net\n    keys:\n"
		for i, id := range ids {
			y += "      - {id: " + id + ", private_key_file: k.pem"
			if i == 0 {
				y += ", active: true"
			}
			y += "}\n"
		}
		return y
	}
	tests := []struct {
		name string
		yaml string
		env  []string
		want []string // each in the error; none: valid
	}{
		{"dot and dash", schedules("daily.eu", "daily-eu"), nil, []string{
			`schedules[1].name: "daily-eu" and schedules[0].name "daily.eu" read the same environment variables, REPORTMAILER_SCHEDULES_DAILY_EU_*: rename one`}},
		{"three ways", schedules("daily.eu", "daily-eu", "daily_eu"), nil, []string{
			`schedules[1].name: "daily-eu" and schedules[0].name "daily.eu"`,
			`schedules[2].name: "daily_eu" and schedules[0].name "daily.eu"`}},
		{"case", schedules("Daily", "daily"), nil, []string{
			`schedules[1].name: "daily" and schedules[0].name "Daily" read the same environment variables, REPORTMAILER_SCHEDULES_DAILY_*`}},
		{"with the variable set", schedules("daily.eu", "daily-eu"), []string{"REPORTMAILER_SCHEDULES_DAILY_EU_BUDGET=1m"}, []string{
			`REPORTMAILER_SCHEDULES_DAILY_EU_*: rename one`}},
		{"one schedule's field is another's", schedules("a", "a-dead-letter"), nil, []string{
			`schedules[1].queue_url: and schedules[0].dead_letter_queue_url both read the environment variable REPORTMAILER_SCHEDULES_A_DEAD_LETTER_QUEUE_URL: rename schedules[0] ("a") or schedules[1] ("a-dead-letter")`}},
		{"cloudfront key ids", cfKeys("k-1", "K_1"), nil, []string{
			`links.cloudfront.keys[1].id: "K_1" and links.cloudfront.keys[0].id "k-1" read the same environment variables, REPORTMAILER_LINKS_CLOUDFRONT_KEYS_K_1_*: rename one`}},
		{"the same name twice is Validate's", schedules("daily", "daily"), nil, []string{
			`schedules[1].name: "daily" is used by an earlier schedule`}},
		{"distinct names", schedules("daily.eu", "daily.us", "weekly-eu"), []string{"REPORTMAILER_SCHEDULES_DAILY_EU_BUDGET=1m"}, nil},
		{"distinct keys", cfKeys("K1", "K2"), nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Parse([]byte(tt.yaml), tt.env)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if tt.env != nil && c.Schedules[0].Budget.Minutes() != 1 {
					t.Errorf("override not applied: %+v", c.Schedules[0])
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error = %v\nwant it to contain %q", err, w)
				}
			}
			if strings.Contains(tt.name, "Validate") && strings.Contains(err.Error(), "environment") {
				t.Errorf("an exact duplicate is reported as an environment clash too:\n%v", err)
			}
		})
	}
}
