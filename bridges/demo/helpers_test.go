package demo_test

import "maunium.net/go/mautrix/id"

func mautrixRoom(s string) id.RoomID { return id.RoomID(s) }
