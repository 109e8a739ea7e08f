package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ovh/kmip-go"
	"github.com/ovh/kmip-go/payloads"

	"github.com/cryptvol/cryptvol/audit"
)

// AuditGroup is the KMIP Object Group of a node's audit anchors.
func AuditGroup(node string) string { return "cryptvol-audit:" + node }

// opaqueDataTypeNone is the Opaque Data Type of an anchor: KMIP 1.4
// section 9.1.3.2.10 defines none and reserves 8XXXXXXX for extensions,
// and PyKMIP knows this one only (kmip/core/enums.py, OpaqueDataType.NONE,
// OpenKMIP/PyKMIP@v0.10.0).
const opaqueDataTypeNone kmip.OpaqueDataType = 0x80000000

// headsPerBatch bounds the Gets sent in one request by Heads: a response
// stays far below maxMessage.
const headsPerBatch = 100

// AuditAnchor keeps a node's audit chain heads on the KMIP server
// (audit.Anchor): each head is an Opaque Object registered under the
// client's identity, named "cryptvol-audit/NODE/SEQ", in Object Group
// AuditGroup(NODE), its value the head's JSON. The server stamps its own
// Initial Date on it, and the host keeps no copy it could change. Register
// and Get of Opaque Objects are what PyKMIP offers for this: its MAC
// operation is allowed to whoever may Get the key (services/server/
// engine.py, _process_mac, OpenKMIP/PyKMIP@v0.10.0), so a key held for
// MACs would leave the server with the plugin's credentials, and a MAC
// leaves the server nothing to compare a cut-off trail with.
type AuditAnchor struct {
	m    *KMIP
	node string
}

var _ audit.Anchor = (*AuditAnchor)(nil)

// NewAuditAnchor anchors node's trail through m.
func NewAuditAnchor(m *KMIP, node string) (*AuditAnchor, error) {
	if err := ValidateNode(node); err != nil {
		return nil, err
	}
	return &AuditAnchor{m: m, node: node}, nil
}

// Seal registers h: one round trip.
func (a *AuditAnchor) Seal(ctx context.Context, h audit.Head) error {
	value, err := json.Marshal(h)
	if err != nil {
		return err
	}
	name := fmt.Sprintf("cryptvol-audit/%s/%d", a.node, h.Seq)
	return a.m.run(ctx, fmt.Sprintf("anchor audit record %d as %q", h.Seq, name), func(ctx context.Context) error {
		resp, err := callT[*payloads.RegisterResponsePayload](ctx, a.m, &payloads.RegisterRequestPayload{
			ObjectType: kmip.ObjectTypeOpaqueObject,
			TemplateAttribute: kmip.TemplateAttribute{Attribute: []kmip.Attribute{
				{AttributeName: kmip.AttributeNameName, AttributeValue: kmip.Name{NameValue: name, NameType: kmip.NameTypeUninterpretedTextString}},
				{AttributeName: kmip.AttributeNameObjectGroup, AttributeValue: AuditGroup(a.node)},
			}},
			Object: &kmip.OpaqueObject{OpaqueDataType: opaqueDataTypeNone, OpaqueDataValue: value},
		})
		if err != nil {
			return err
		}
		return validateText("id returned by Register", resp.UniqueIdentifier)
	})
}

// Heads returns every head of the node's group: a Locate, then the
// objects' values in batches of Gets. An object of the group that is not
// a head is an error naming it: whoever put it there holds credentials
// that can register in the group, and Verify must not pass over it.
func (a *AuditAnchor) Heads(ctx context.Context) ([]audit.Head, error) {
	group := AuditGroup(a.node)
	var heads []audit.Head
	err := a.m.run(ctx, fmt.Sprintf("read audit anchors of object group %q", group), func(ctx context.Context) error {
		loc, err := callT[*payloads.LocateResponsePayload](ctx, a.m, &payloads.LocateRequestPayload{Attribute: []kmip.Attribute{
			{AttributeName: kmip.AttributeNameObjectType, AttributeValue: kmip.ObjectTypeOpaqueObject},
			{AttributeName: kmip.AttributeNameObjectGroup, AttributeValue: group},
		}})
		if err != nil {
			return err
		}
		ids := loc.UniqueIdentifier
		for start := 0; start < len(ids); start += headsPerBatch {
			batch := ids[start:min(start+headsPerBatch, len(ids))]
			pls := make([]kmip.OperationPayload, 0, len(batch))
			for _, id := range batch {
				pls = append(pls, &payloads.GetRequestPayload{UniqueIdentifier: id})
			}
			items, err := a.m.batch(ctx, pls...)
			if err != nil {
				return err
			}
			for i := range items {
				h, err := headFrom(&items[i])
				if errors.Is(err, ErrNotFound) {
					continue // destroyed between the Locate and the Get
				}
				if err != nil {
					return fmt.Errorf("object %q of group %q: %w", batch[i], group, err)
				}
				heads = append(heads, h)
			}
		}
		return nil
	})
	return heads, err
}

// headFrom decodes a Get's answer as a head.
func headFrom(item *kmip.ResponseBatchItem) (audit.Head, error) {
	got, err := result[*payloads.GetResponsePayload](item)
	if err != nil {
		return audit.Head{}, err
	}
	o, ok := got.Object.(*kmip.OpaqueObject)
	if !ok {
		return audit.Head{}, fmt.Errorf("is a %T, not an Opaque Object holding an audit head", got.Object)
	}
	var h audit.Head
	if err := json.Unmarshal(o.OpaqueDataValue, &h); err != nil || h.Seq == 0 || h.Hash == "" {
		return audit.Head{}, fmt.Errorf("holds %d bytes that are not an audit head (allowed: JSON with seq, hash, first, current)", len(o.OpaqueDataValue))
	}
	return h, nil
}
