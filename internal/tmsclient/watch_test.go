package tmsclient

import (
	"errors"
	"maps"
	"slices"
	"testing"
)

func TestTopicMatch(t *testing.T) {
	for _, tc := range []struct {
		filter, topic string
		want          bool
	}{
		{"tms/v1/+/up/#", "tms/v1/T-1/up/log/ecr", true},
		{"tms/v1/+/up/#", "tms/v1/T-1/up", true},
		{"tms/v1/+/up/#", "tms/v1/T-1/down/cmd", false},
		{"tms/v1/T-1/up/ack", "tms/v1/T-1/up/ack", true},
		{"tms/v1/T-1/up/ack", "tms/v1/T-1/up/ack/x", false},
		{"tms/v1/T-1/up/log/+", "tms/v1/T-1/up/log/pos", true},
		{"tms/v1/T-1/up/log/+", "tms/v1/T-1/up/log", false},
		{"tms/v1/T-2/up/#", "tms/v1/T-1/up/ack", false},
	} {
		if got := topicMatch(tc.filter, tc.topic); got != tc.want {
			t.Errorf("topicMatch(%q, %q) = %v", tc.filter, tc.topic, got)
		}
	}
}

func TestCovers(t *testing.T) {
	for _, tc := range []struct {
		g, f string
		want bool
	}{
		{"a/+/up/#", "a/T/up/ack", true},
		{"a/+/up/#", "a/+/up/log/+", true},
		{"a/T/up/#", "a/+/up/ack", false},
		{"a/+/up/ack", "a/+/up/#", false},
		{"a/+", "a/#", false},
		{"a/#", "a", true},
		{"a/b", "a/b", true},
		{"a/b", "a/b/c", false},
		{"a/b/c", "a/b", false},
		{"a/+/c", "a/b/c", true},
		{"a/+/c", "a/+/d", false},
	} {
		if got := covers(tc.g, tc.f); got != tc.want {
			t.Errorf("covers(%q, %q) = %v", tc.g, tc.f, got)
		}
	}
	cover := minimalCover(map[string]int{
		"tms/v1/+/up/#": 1, "tms/v1/T/up/ack": 2, "tms/v1/T/up/#": 1, "tms/v1/+/down/cmd": 1,
	})
	if got := slices.Sorted(maps.Keys(cover)); !slices.Equal(got, []string{"tms/v1/+/down/cmd", "tms/v1/+/up/#"}) {
		t.Errorf("minimal cover %v", got)
	}
}

func TestWatchFilters(t *testing.T) {
	got, err := watchFilters("+", nil)
	if err != nil || !slices.Equal(got, []string{"tms/v1/+/up/#"}) {
		t.Errorf("all streams: %v, %v", got, err)
	}
	got, err = watchFilters("T-1", []string{"ack", "log/+", "ack"})
	if err != nil || !slices.Equal(got, []string{"tms/v1/T-1/up/ack", "tms/v1/T-1/up/log/+"}) {
		t.Errorf("streams: %v, %v", got, err)
	}
	for _, tc := range []struct {
		dev     string
		streams []string
	}{
		{"T/1", nil}, {"", nil}, {"#", nil},
		{"T", []string{""}}, {"T", []string{"a//b"}}, {"T", []string{"#/a"}}, {"T", []string{"lo+g"}},
	} {
		var ie *InputError
		if _, err := watchFilters(tc.dev, tc.streams); !errors.As(err, &ie) {
			t.Errorf("watchFilters(%q, %q): %v", tc.dev, tc.streams, err)
		}
	}
}
