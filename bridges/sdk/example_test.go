package sdk_test

import (
	"context"
	"fmt"
	"log"

	"github.com/eimis-hub/eimis/bridges/sdk"
)

// A bridge binds one of its users, opens a room with a colleague who uses
// another app, writes, and receives the room's events.
func Example() {
	hub := startFakeHub() // in production: the hub's URL, "https://hub.example.org"
	defer hub.Close()

	received := make(chan string, 1)
	client, err := sdk.New(sdk.Config{
		URL:    hub.URL,
		Token:  "secret-token", // printed once by `eimis-hub bridge add`
		Client: "example-bridge/1.0",
		OnEvent: func(ctx context.Context, ev *sdk.Event) error {
			if m, ok := ev.Message(); ok {
				// Deliver to your app here. Never log the body: it is
				// health data.
				received <- fmt.Sprintf("%s wrote %q", ev.Sender.IDNat(), m.Body)
			}
			return nil // handled: the SDK acknowledges it to the hub
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// Run reconnects by itself; it returns only when ctx ends or the
		// hub refuses the bridge for good (sdk.Fatal).
		if err := client.Run(ctx); err != nil {
			log.Fatal(err)
		}
	}()

	const helene = "810000000017" // idNat = 8 + RPPS
	// Hélène consents: she gets a one-time link code from her own session
	// on the hub (POST /_eimis/client/v1/bindings/link_code) and types it
	// into your app. Later binds of her need no code.
	user, err := client.BindWithLinkCode(ctx, helene, "7K3M-9QXZ")
	if err != nil {
		log.Fatal(err) // e.g. errors.Is(err, sdk.ErrLinkCodeInvalid), sdk.ErrInactivePractitioner
	}
	fmt.Println("bound", user.UserID, user.DisplayName)

	room, err := client.CreateRoom(ctx, sdk.CreateRoom{As: helene, Name: "Bed 4", Invite: []string{"810000000025"}})
	if err != nil {
		log.Fatal(err)
	}
	// The transaction ID is yours: sending again with it is one message.
	if _, err := client.SendText(ctx, helene, room, "msg-0001", "Patient stable, see you at 6"); err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-received)
	// Output:
	// bound @810000000017:hub.example Hélène Fontenelle - Médecin
	// 810000000017 wrote "Patient stable, see you at 6"
}
