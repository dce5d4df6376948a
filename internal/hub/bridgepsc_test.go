package hub_test

import (
	"errors"
	"testing"

	"github.com/eimis-hub/eimis/bridges/sdk"
	"github.com/eimis-hub/eimis/internal/config"
	"github.com/eimis-hub/eimis/internal/hub/hubtest"
	"github.com/eimis-hub/eimis/internal/psc/psctest"
)

// TestBridgeBindPSCProof: with bridge_require_psc_proof, a bridge binds a
// practitioner only with that practitioner's Pro Santé Connect access
// token, checked against the provider.
func TestBridgeBindPSCProof(t *testing.T) {
	op := psctest.New(t)
	h := hubtest.Start(t, hubtest.Options{Configure: func(c *config.Config) {
		c.PSCIssuer, c.PSCClientID, c.PSCClientSecret = op.URL(), psctest.ClientID, psctest.ClientSecret
		c.BridgeRequirePSCProof = true
	}})
	ctx := ctxT(t)
	tokA, _ := addBridges(t, h)
	app := startApp(t, h.URL, tokA)
	alice, bob := hubtest.Localpart("alice"), hubtest.Localpart("bob")

	code := func(err error) string {
		var se *sdk.Error
		if errors.As(err, &se) {
			return se.Code
		}
		return "not an sdk error: " + errString(err)
	}
	if _, err := app.Bind(ctx, alice); code(err) != "EIMIS_PSC_PROOF_REQUIRED" {
		t.Fatalf("bind without proof: %v", err)
	}
	op.SetIDNat(bob)
	bobsToken := op.IssueAccessToken()
	if _, err := app.BindWithProof(ctx, alice, bobsToken); code(err) != "EIMIS_PSC_PROOF_INVALID" {
		t.Fatalf("bind with someone else's proof: %v", err)
	}
	if _, err := app.BindWithProof(ctx, alice, "forged"); code(err) != "EIMIS_PSC_PROOF_INVALID" {
		t.Fatalf("bind with a forged proof: %v", err)
	}
	op.SetIDNat(alice)
	u, err := app.BindWithProof(ctx, alice, op.IssueAccessToken())
	if err != nil || u.IDNat != alice {
		t.Fatalf("bind with alice's proof: %+v, %v", u, err)
	}
}
