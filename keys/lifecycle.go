package keys

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/ovh/kmip-go"
	"github.com/ovh/kmip-go/payloads"
	"github.com/ovh/kmip-go/ttlv"
	"github.com/sirupsen/logrus"
)

// Create returns the id and the material of an active AES-256 key named
// name, in KMIP Object Group group, or Config.Group when group is ""; the
// caller wipes the key. The group goes in the Create's own template, so a
// group of the caller's choice costs no round trip.
//
// A Create interrupted after the server acted leaves a key behind, so keys
// named name may already exist or be duplicated. The rule, applied once the
// new key is active: among the keys named name, the oldest Active one is kept
// (Initial Date, then id); if none is Active, the oldest PreActive one (a
// Create interrupted before its Activate) is activated and kept; every other
// key with the name (extra copies, or Revoked keys whose Destroy was
// interrupted) is destroyed. The new key is made without looking for the
// name first: cryptvol gives every create a name of its own
// (volume/create.go, newKeyName), so it is normally free, and the Locate
// that follows the Activate finds any other key of the name all the same.
// The material comes in that request too, so a new name costs two round
// trips: Create; Activate, Locate and Get.
func (m *KMIP) Create(ctx context.Context, name, group string) (string, *Key, error) {
	op := fmt.Sprintf("create key %q", name)
	if err := validateText("name", name); err != nil {
		return "", nil, m.wrap(op, err)
	}
	if group == "" {
		group = m.cfg.Group
	} else if err := validateText("object group", group); err != nil {
		return "", nil, m.wrap(op, err)
	}
	var id string
	var key *Key
	err := m.run(ctx, op, func(ctx context.Context) error {
		created, named, got, err := m.createActive(ctx, name, group)
		if err != nil {
			return err
		}
		if len(named) == 1 && named[0] == created && got != nil {
			id, key = created, got
		} else {
			// Another key carries the name (or the batched Get failed):
			// the rule decides, and the kept key is fetched on its own.
			got.Wipe()
			if id, err = m.adopt(ctx, name, created); err != nil {
				return err
			}
			if id == "" {
				return fmt.Errorf("key %q made for this name is not found by Locate", created)
			}
			if key, err = m.get(ctx, id, kmip.StateActive); err != nil {
				return err
			}
		}
		m.log.WithFields(logrus.Fields{"op": "create", "key_id": id, "key_name": name}).Info("created KMIP key")
		return nil
	})
	if err != nil {
		key.Wipe()
		return "", nil, err
	}
	return id, key, nil
}

// Get returns the material of the key with id if it is an Active AES-256
// key, with its names. PyKMIP's Get also serves PreActive and Revoked keys,
// so the state is fetched in the same batch and checked here; the names
// come in the same GetAttributes, at no extra round trip.
func (m *KMIP) Get(ctx context.Context, id string) (*Key, error) {
	return m.getRun(ctx, fmt.Sprintf("get key %q", id), id, kmip.StateActive)
}

// GetDeactivated is Get for a Deactivated key, or one still Active. KMIP
// lets a Deactivated key process what it protected, never protect anything
// new (KMIP 1.4 specification, 3.22 State); PyKMIP's Get serves it
// (kmip/services/server/engine.py@v0.10.0, _process_get checks no state).
// A server that refuses it answers with its own error.
func (m *KMIP) GetDeactivated(ctx context.Context, id string) (*Key, error) {
	return m.getRun(ctx, fmt.Sprintf("get deactivated key %q", id), id, kmip.StateActive, kmip.StateDeactivated)
}

func (m *KMIP) getRun(ctx context.Context, op, id string, states ...kmip.State) (*Key, error) {
	if err := validateText("key id", id); err != nil {
		return nil, m.wrap(op, err)
	}
	var key *Key
	err := m.run(ctx, op, func(ctx context.Context) (err error) {
		key, err = m.get(ctx, id, states...)
		return err
	})
	return key, err
}

// get is Get without locking, for a key in one of states; the caller holds
// sem.
func (m *KMIP) get(ctx context.Context, id string, states ...kmip.State) (*Key, error) {
	items, err := m.batch(ctx,
		&payloads.GetAttributesRequestPayload{UniqueIdentifier: id, AttributeName: []kmip.AttributeName{kmip.AttributeNameState, kmip.AttributeNameName}},
		&payloads.GetRequestPayload{UniqueIdentifier: id},
	)
	if err != nil {
		return nil, err
	}
	var names []string
	attrs, aerr := result[*payloads.GetAttributesResponsePayload](&items[0])
	if aerr == nil {
		var state kmip.State
		if state, aerr = stateOf(attrs); aerr == nil && !slices.Contains(states, state) {
			aerr = fmt.Errorf("%w (state %s)", ErrNotActive, ttlv.EnumStr(state))
		}
	}
	if aerr == nil {
		names, aerr = namesOf(attrs)
	}
	if aerr != nil {
		// Whatever happens, no copy of the material outlives this call
		// except the one handed to the caller.
		got, _ := result[*payloads.GetResponsePayload](&items[1])
		wipeGetResponse(got)
		return nil, aerr
	}
	return keyFrom(&items[1], names...)
}

// keyFrom takes the key out of a Get's batch item, and wipes every other
// copy of the material the response holds.
func keyFrom(item *kmip.ResponseBatchItem, names ...string) (*Key, error) {
	got, err := result[*payloads.GetResponsePayload](item)
	defer wipeGetResponse(got)
	if err != nil {
		return nil, err
	}
	b, err := symmetricKeyMaterial(got)
	if err != nil {
		return nil, err
	}
	return NewKey(b, names...), nil
}

// Destroy revokes the key (reason: cessation of operation) if it is Active,
// then destroys it. A key that is unknown or already gone counts as
// destroyed, so an interrupted Destroy can simply be repeated.
func (m *KMIP) Destroy(ctx context.Context, id string) error {
	op := fmt.Sprintf("destroy key %q", id)
	if err := validateText("key id", id); err != nil {
		return m.wrap(op, err)
	}
	return m.run(ctx, op, func(ctx context.Context) error {
		gone, err := m.destroy(ctx, id)
		if err != nil {
			return err
		}
		l := m.log.WithFields(logrus.Fields{"op": "destroy", "key_id": id})
		if gone {
			l.Debug("KMIP key already gone")
		} else {
			l.Info("destroyed KMIP key")
		}
		return nil
	})
}

// Deactivate revokes the key with reason cessation of operation, which
// moves an Active key to Deactivated. A resent or repeated Revoke fails on
// a key that is no longer Active (PyKMIP: engine.py@v0.10.0,
// _process_revoke), so such a failure is settled by reading the key's
// State: Deactivated is success, anything else is the error.
func (m *KMIP) Deactivate(ctx context.Context, id string) error {
	op := fmt.Sprintf("deactivate key %q", id)
	if err := validateText("key id", id); err != nil {
		return m.wrap(op, err)
	}
	return m.run(ctx, op, func(ctx context.Context) error {
		_, err := callT[*payloads.RevokeResponsePayload](ctx, m, revokeRequest(id))
		if err != nil && isResultError(err) && !errors.Is(err, ErrNotFound) {
			st, serr := m.state(ctx, id)
			switch {
			case serr != nil:
				return errors.Join(err, serr)
			case st == kmip.StateDeactivated:
				err = nil
			default:
				return fmt.Errorf("%w (state %s)", err, ttlv.EnumStr(st))
			}
		}
		if err != nil {
			return err
		}
		m.log.WithFields(logrus.Fields{"op": "deactivate", "key_id": id}).Info("deactivated KMIP key")
		return nil
	})
}

// createActive creates a key named name in Object Group group (none when
// "") and activates it; named lists the
// keys that carry the name after the activation (nil when that could not be
// read), and key is the new key's material (nil when its Get failed).
// PyKMIP rejects an Activate batched without an explicit id, so the Create
// goes alone; the Activate, with the new id, shares its request with the
// Locate that Create's rule needs and the Get of the material, in that order
// (batch()). If Activate fails the new key is destroyed.
func (m *KMIP) createActive(ctx context.Context, name, group string) (id string, named []string, key *Key, err error) {
	id, err = m.createKey(ctx, name, group)
	if err != nil {
		return "", nil, nil, err
	}
	items, err := m.batch(ctx, &payloads.ActivateRequestPayload{UniqueIdentifier: id}, locateRequest(name, true),
		&payloads.GetRequestPayload{UniqueIdentifier: id})
	if err == nil {
		_, err = result[*payloads.ActivateResponsePayload](&items[0])
		if loc, lerr := result[*payloads.LocateResponsePayload](&items[1]); lerr == nil {
			named = loc.UniqueIdentifier
		}
		// Got before the Activate's outcome is known, and served only if
		// the Activate succeeded: PyKMIP's Get serves PreActive keys too.
		// createKey made it under name.
		key, _ = keyFrom(&items[2], name)
	}
	if err != nil {
		key.Wipe()
		key = nil
		// kmip-go resends after EOF: a resent Activate of a key the first
		// one activated fails, yet the key is fine.
		if isResultError(err) {
			if st, serr := m.state(ctx, id); serr == nil && st == kmip.StateActive {
				return id, named, nil, nil
			}
		}
		err = fmt.Errorf("activate new key %q: %w", id, err)
		if _, derr := m.destroy(ctx, id); derr != nil {
			return "", nil, nil, errors.Join(err, fmt.Errorf("destroy the unactivated key %q: %w", id, derr))
		}
		m.log.WithFields(logrus.Fields{"op": "create", "key_id": id, "key_name": name}).Warn("destroyed new KMIP key that failed to activate")
		return "", nil, nil, err
	}
	return id, named, key, nil
}

// createKey creates a PreActive AES-256 key named name, in Object Group
// group and under Config.Policy when they are set.
func (m *KMIP) createKey(ctx context.Context, name, group string) (string, error) {
	attrs := []kmip.Attribute{
		{AttributeName: kmip.AttributeNameCryptographicAlgorithm, AttributeValue: kmip.CryptographicAlgorithmAES},
		{AttributeName: kmip.AttributeNameCryptographicLength, AttributeValue: int32(keyBytes * 8)},
		{AttributeName: kmip.AttributeNameCryptographicUsageMask, AttributeValue: kmip.CryptographicUsageEncrypt | kmip.CryptographicUsageDecrypt},
		{AttributeName: kmip.AttributeNameName, AttributeValue: kmip.Name{NameValue: name, NameType: kmip.NameTypeUninterpretedTextString}},
	}
	if group != "" {
		attrs = append(attrs, kmip.Attribute{AttributeName: kmip.AttributeNameObjectGroup, AttributeValue: group})
	}
	if m.cfg.Policy != "" {
		attrs = append(attrs, kmip.Attribute{AttributeName: kmip.AttributeNameOperationPolicyName, AttributeValue: m.cfg.Policy})
	}
	resp, err := callT[*payloads.CreateResponsePayload](ctx, m, &payloads.CreateRequestPayload{
		ObjectType:        kmip.ObjectTypeSymmetricKey,
		TemplateAttribute: kmip.TemplateAttribute{Attribute: attrs},
	})
	if err != nil {
		return "", err
	}
	id := resp.UniqueIdentifier
	if err := validateText("key id returned by Create", id); err != nil {
		return "", err
	}
	return id, nil
}

// destroy is Destroy without locking. An unknown id succeeds with gone set.
// The caller holds sem.
//
// Revoke and Destroy go in one request (one round trip where GetAttributes,
// Revoke and Destroy would take three): the batch is ordered and goes on
// past a failed item (batch()), so an Active key is revoked and then
// destroyed, and a key that is not Active fails the Revoke and is destroyed
// all the same (PyKMIP: engine.py, _process_revoke refuses a key that is not
// Active, _process_destroy one that is). Any other outcome, such as a server
// that keeps destroyed objects, is settled step by step from the key's State.
func (m *KMIP) destroy(ctx context.Context, id string) (gone bool, err error) {
	items, err := m.batch(ctx, revokeRequest(id), &payloads.DestroyRequestPayload{UniqueIdentifier: id})
	if err != nil {
		return false, err
	}
	rerr, derr := itemError(&items[0]), itemError(&items[1])
	switch {
	case derr == nil:
		return false, nil
	case errors.Is(rerr, ErrNotFound) && errors.Is(derr, ErrNotFound):
		return true, nil
	}
	return m.destroyStepwise(ctx, id)
}

func revokeRequest(id string) *payloads.RevokeRequestPayload {
	return &payloads.RevokeRequestPayload{
		UniqueIdentifier: id,
		RevocationReason: kmip.RevocationReason{RevocationReasonCode: kmip.RevocationReasonCodeCessationOfOperation},
	}
}

// destroyStepwise reads the key's State, revokes it if Active, then
// destroys it.
func (m *KMIP) destroyStepwise(ctx context.Context, id string) (gone bool, err error) {
	state, err := m.state(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	switch state {
	case kmip.StateDestroyed, kmip.StateDestroyedCompromised:
		return true, nil
	case kmip.StateActive:
		// Servers refuse to destroy an Active key (PyKMIP: PermissionDenied).
		_, err := callT[*payloads.RevokeResponsePayload](ctx, m, revokeRequest(id))
		if errors.Is(err, ErrNotFound) {
			return true, nil
		}
		// As for Activate: a resent Revoke fails on the key the first one
		// revoked.
		if isResultError(err) {
			if st, serr := m.state(ctx, id); serr == nil && st != kmip.StateActive {
				err = nil
			}
		}
		if err != nil {
			return false, fmt.Errorf("revoke: %w", err)
		}
	}
	_, err = callT[*payloads.DestroyResponsePayload](ctx, m, &payloads.DestroyRequestPayload{UniqueIdentifier: id})
	if errors.Is(err, ErrNotFound) {
		return true, nil
	}
	return false, err
}

// state fetches the State attribute of id.
func (m *KMIP) state(ctx context.Context, id string) (kmip.State, error) {
	attrs, err := callT[*payloads.GetAttributesResponsePayload](ctx, m, &payloads.GetAttributesRequestPayload{
		UniqueIdentifier: id,
		AttributeName:    []kmip.AttributeName{kmip.AttributeNameState},
	})
	if err != nil {
		return 0, err
	}
	return stateOf(attrs)
}

// namesOf returns the values of the Name attributes in resp, in the
// server's order. A key may carry several (KMIP 1.4 specification, 3.2
// Name: https://docs.oasis-open.org/kmip/spec/v1.4/os/kmip-spec-v1.4-os.html);
// PyKMIP answers each as an Attribute of its own with an Attribute Index
// (OpenKMIP/PyKMIP kmip/services/server/engine.py@v0.10.0,
// _get_attributes_from_managed_object), and none for a key without one.
func namesOf(resp *payloads.GetAttributesResponsePayload) ([]string, error) {
	var names []string
	for _, a := range resp.Attribute {
		if a.AttributeName != kmip.AttributeNameName {
			continue
		}
		n, ok := a.AttributeValue.(kmip.Name)
		if !ok {
			return nil, fmt.Errorf("Name attribute has unexpected type %T", a.AttributeValue)
		}
		names = append(names, n.NameValue)
	}
	return names, nil
}

func stateOf(resp *payloads.GetAttributesResponsePayload) (kmip.State, error) {
	for _, a := range resp.Attribute {
		if a.AttributeName != kmip.AttributeNameState {
			continue
		}
		if s, ok := a.AttributeValue.(kmip.State); ok {
			return s, nil
		}
		return 0, fmt.Errorf("State attribute has unexpected type %T", a.AttributeValue)
	}
	return 0, errors.New("server returned no State attribute")
}
