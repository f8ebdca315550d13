<?php
// The echo bot from the original module's README, for mod_component_http.
// Serve it with PHP's built-in server:  php -S 127.0.0.1:8080 echo_bot.php

// Receive and decode the stanza's JSON.
$stanza = json_decode(file_get_contents('php://input'));
$received = $stanza->body ?? null;

if ($received === null) {
    // Presence, IQs, chat states: nothing to say.
    http_response_code(204);
    exit;
}

// Send the response.
header('Content-Type: application/json');
echo json_encode(array(
    'body' => "Did you say $received?"
));
