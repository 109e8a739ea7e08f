package keys

import (
	"errors"
	"fmt"

	"github.com/ovh/kmip-go"
	"github.com/ovh/kmip-go/payloads"
	"github.com/ovh/kmip-go/ttlv"
)

// symmetricKeyMaterial checks that got is a plain AES-256 key and returns
// its 32 bytes. The slice is the decoder's own copy; the caller owns it.
func symmetricKeyMaterial(got *payloads.GetResponsePayload) ([]byte, error) {
	sk, ok := got.Object.(*kmip.SymmetricKey)
	if !ok || got.ObjectType != kmip.ObjectTypeSymmetricKey {
		return nil, fmt.Errorf("object is a %s, not a symmetric key", ttlv.EnumStr(got.ObjectType))
	}
	kb := &sk.KeyBlock
	if kb.KeyWrappingData != nil || (kb.KeyValue != nil && kb.KeyValue.Wrapped != nil) {
		return nil, errors.New("key material is wrapped; want it plain")
	}
	if kb.CryptographicAlgorithm != kmip.CryptographicAlgorithmAES {
		return nil, fmt.Errorf("key algorithm is %s, want AES", ttlv.EnumStr(kb.CryptographicAlgorithm))
	}
	b, err := sk.KeyMaterial()
	if err != nil {
		return nil, fmt.Errorf("key material: %w", err)
	}
	if len(b) != keyBytes {
		return nil, fmt.Errorf("key material is %d bytes, want %d", len(b), keyBytes)
	}
	// Detach the slice so that wiping the response leaves it intact.
	if mat := kb.KeyValue.Plain; mat != nil {
		mat.KeyMaterial.Bytes = nil
		mat.KeyMaterial.TransparentSymmetricKey = nil
	}
	return b, nil
}

// wipeGetResponse zeroes the key material still referenced by a Get
// response. kmip-go's receive buffer and the TLS record buffers hold copies
// this package cannot reach.
func wipeGetResponse(got *payloads.GetResponsePayload) {
	if got == nil {
		return
	}
	var kb *kmip.KeyBlock
	switch o := got.Object.(type) {
	case *kmip.SymmetricKey:
		kb = &o.KeyBlock
	case *kmip.SecretData:
		kb = &o.KeyBlock
	default:
		return
	}
	if kb.KeyValue == nil {
		return
	}
	if kb.KeyValue.Wrapped != nil {
		clear(*kb.KeyValue.Wrapped)
	}
	if p := kb.KeyValue.Plain; p != nil {
		if p.KeyMaterial.Bytes != nil {
			clear(*p.KeyMaterial.Bytes)
		}
		if t := p.KeyMaterial.TransparentSymmetricKey; t != nil {
			clear(t.Key)
		}
	}
}
