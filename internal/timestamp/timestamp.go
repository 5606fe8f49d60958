// Package timestamp reads the timestamps people write in history files and
// deploy lists: "2006-01-02 15:04:05" (UTC, optional fraction), RFC 3339,
// or Unix seconds, integer or fractional, to the millisecond.
package timestamp

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

const dateTimeLayout = "2006-01-02 15:04:05"

// Parse reads a timestamp, rounded to the millisecond, in UTC.
func Parse(s string) (time.Time, error) {
	ms, err := ParseMillis(s)
	if err != nil {
		return time.Time{}, err
	}
	return time.UnixMilli(ms).UTC(), nil
}

// maxUnixSeconds is 9999-12-31T23:59:59Z.
const maxUnixSeconds = 253402300799

// ParseMillis reads a timestamp as Parse does and returns milliseconds
// since the Unix epoch.
func ParseMillis(s string) (int64, error) {
	if s == "" {
		return 0, errors.New("empty timestamp")
	}
	if isUnixSeconds(s) {
		return parseUnixSeconds(s)
	}
	if ms, ok := parseDateTime(s); ok {
		return ms, nil
	}
	for _, layout := range []string{dateTimeLayout, time.RFC3339Nano} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.Round(time.Millisecond).UnixMilli(), nil
		}
	}
	return 0, errors.New("timestamp " + strconv.Quote(s) + ": want 2006-01-02 15:04:05 (UTC), RFC 3339 or Unix seconds")
}

// parseDateTime is time.Parse(dateTimeLayout, s) for the common case
// (no fraction), three times faster; ok is false for anything else.
func parseDateTime(s string) (int64, bool) {
	if len(s) != len(dateTimeLayout) || s[4] != '-' || s[7] != '-' || s[10] != ' ' || s[13] != ':' || s[16] != ':' {
		return 0, false
	}
	num := func(i, j int) int {
		n := 0
		for ; i < j; i++ {
			c := s[i]
			if c < '0' || c > '9' {
				return -1
			}
			n = n*10 + int(c-'0')
		}
		return n
	}
	year, month, day := num(0, 4), num(5, 7), num(8, 10)
	hour, minute, sec := num(11, 13), num(14, 16), num(17, 19)
	if year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 || minute > 59 || sec < 0 || sec > 59 {
		return 0, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, 0, time.UTC)
	if t.Day() != day { // February 30th
		return 0, false
	}
	return t.UnixMilli(), true
}

// isUnixSeconds: digits, optionally a point and more digits.
func isUnixSeconds(s string) bool {
	intPart, frac, hasPoint := strings.Cut(s, ".")
	if intPart == "" || hasPoint && frac == "" {
		return false
	}
	for _, part := range []string{intPart, frac} {
		for i := 0; i < len(part); i++ {
			if part[i] < '0' || part[i] > '9' {
				return false
			}
		}
	}
	return true
}

// parseUnixSeconds converts decimal seconds to milliseconds exactly,
// rounding half up at the fourth decimal.
func parseUnixSeconds(s string) (int64, error) {
	intPart, frac, _ := strings.Cut(s, ".")
	intPart = strings.TrimLeft(intPart, "0")
	if intPart == "" {
		intPart = "0"
	}
	if len(intPart) > 12 {
		return 0, unixRangeError(s, intPart)
	}
	sec, err := strconv.ParseInt(intPart, 10, 64)
	if err != nil || sec > maxUnixSeconds {
		return 0, unixRangeError(s, intPart)
	}
	ms := sec * 1000
	digits := (frac + "000")[:3]
	m, _ := strconv.ParseInt(digits, 10, 64)
	ms += m
	if len(frac) > 3 && frac[3] >= '5' {
		ms++
	}
	return ms, nil
}

func unixRangeError(s, intPart string) error {
	msg := "timestamp " + strconv.Quote(s) + ": Unix seconds beyond the year 9999"
	if len(intPart) >= 13 && len(intPart) <= 16 {
		msg += " (milliseconds? divide by 1000)"
	}
	return errors.New(msg)
}
