package keys

import (
	"context"

	"github.com/ovh/kmip-go"
	"github.com/ovh/kmip-go/payloads"
)

// Test helpers that put keys into the states an interrupted operation leaves
// behind. The caller holds m.sem (use m.run).

func (m *KMIP) createPreActive(ctx context.Context, name string) (string, error) {
	return m.createKey(ctx, name, m.cfg.Group)
}

func (m *KMIP) revoke(ctx context.Context, id string) error {
	_, err := callT[*payloads.RevokeResponsePayload](ctx, m, &payloads.RevokeRequestPayload{
		UniqueIdentifier: id,
		RevocationReason: kmip.RevocationReason{RevocationReasonCode: kmip.RevocationReasonCodeCessationOfOperation},
	})
	return err
}
