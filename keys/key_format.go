package keys

import (
	"fmt"
	"io"
)

const redacted = "[key redacted]"

// Format redacts every verb (%v, %+v, %#v, %s, %x, ...), also when a Key
// value rather than a pointer is printed: fmt would otherwise walk the
// struct and print the bytes.
func (k Key) Format(f fmt.State, _ rune) {
	_, _ = io.WriteString(f, redacted)
}

// MarshalText redacts the key in JSON, YAML and structured logs.
func (k Key) MarshalText() ([]byte, error) {
	return []byte(redacted), nil
}
