package deploy_test

import (
	"strings"
	"testing"

	"github.com/immune-project/immune/deploy"
)

// TestValidName: a name is one path element ZooKeeper accepts.
func TestValidName(t *testing.T) {
	for _, s := range []string{"checkout", "checkout-20261125T120000Z-3f9a1c", "d.1", "...", "a b", "café", "服务", "\u00a0", "\uffef", strings.Repeat("x", 255)} {
		if !deploy.ValidName(s) {
			t.Errorf("ValidName(%q) = false, want true", s)
		}
	}
	for _, s := range []string{
		"", ".", "..", "a/b", "/", strings.Repeat("x", 256),
		"a\x00b", "a\tb", "a\nb", "\x1f", "\x7f", // ASCII controls
		"a\u0080b", "\u0085", "\u009f", // C1 controls
		"a\xffb", "\xc3", "\xed\xa0\x80", // not UTF-8 (the last a surrogate)
		"\ue000", "\uf8ff", // private use, refused by ZooKeeper
		"\ufff0", "\ufffd", "\uffff",
		"deploy-\U0001F680", // past U+FFFF: surrogates in ZooKeeper's UTF-16
	} {
		if deploy.ValidName(s) {
			t.Errorf("ValidName(%q) = true, want false", s)
		}
	}
}
