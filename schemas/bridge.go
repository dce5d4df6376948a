package schemas

import "embed"

// Bridge holds the JSON Schemas (draft 2020-12) of the Bridge Protocol,
// bridge/v1/<type>.json for each frame type plus bridge/v1/common.json.
// The gateway validates every frame a bridge sends against them, and the
// vendor guide (docs/bridge-protocol.md) points vendors at the same files.
//
//go:embed bridge/v1/*.json
var Bridge embed.FS

// BridgeV1Dir is the directory of protocol version 1 inside Bridge.
const BridgeV1Dir = "bridge/v1"
