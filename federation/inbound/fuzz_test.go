package inbound

import (
	"encoding/json"
	"testing"
)

// FuzzDecodeTransaction: no input makes the transaction decoder panic,
// and whatever it accepts is within the limits.
func FuzzDecodeTransaction(f *testing.F) {
	f.Add([]byte(`{"origin":"b.test","origin_server_ts":1,"pdus":[{"type":"m.room.message"}],"edus":[{"edu_type":"m.typing","content":{}}]}`))
	f.Add([]byte(`{"origin":"b.test","pdus":[1,2]}`))
	f.Add([]byte(`{"origin":"","pdus":null}`))
	f.Add([]byte(`[`))
	f.Add([]byte(`{"origin":"b.test","pdus":[{"a":1e400}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		txn, err := DecodeTransaction(body)
		if err != nil {
			return
		}
		if txn.Origin == "" || len(txn.PDUs) > MaxTxnPDUs || len(txn.EDUs) > MaxTxnEDUs {
			t.Fatalf("accepted a transaction over the limits: %d PDUs, %d EDUs", len(txn.PDUs), len(txn.EDUs))
		}
		for _, raw := range txn.EDUs {
			var e EDU
			_ = json.Unmarshal(raw, &e)
		}
	})
}
