/*
 * topic_spec.h - the MQTT 3.1.1 section 4.7 matching examples plus edge
 * cases (empty levels, $-topics), as (filter, topic, expected). Shared by
 * test_sub_trie.c and test_retain.c, which must agree with topic_matches().
 */
#ifndef KG_TEST_TOPIC_SPEC_H
#define KG_TEST_TOPIC_SPEC_H

#include <stdbool.h>

static const struct {
	const char *filter, *topic;
	bool match;
} spec[] = {
	{ "sport/tennis/player1/#", "sport/tennis/player1", true },
	{ "sport/tennis/player1/#", "sport/tennis/player1/ranking", true },
	{ "sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true },
	{ "sport/tennis/player1/#", "sport/tennis", false },
	{ "sport/#", "sport", true },
	{ "sport/tennis/#", "sport", false },
	{ "sport/tennis/+", "sport/tennis/player1", true },
	{ "sport/tennis/+", "sport/tennis/player1/ranking", false },
	{ "sport/+", "sport", false },
	{ "sport/+", "sport/", true },
	{ "+/+", "/finance", true },
	{ "/+", "/finance", true },
	{ "+", "/finance", false },
	{ "#", "sport/tennis", true },
	{ "#", "$SYS/monitor/Clients", false },
	{ "+/monitor/Clients", "$SYS/monitor/Clients", false },
	{ "$SYS/#", "$SYS/monitor/Clients", true },
	{ "$SYS/#", "$SYS", true },
	{ "$SYS/monitor/+", "$SYS/monitor/Clients", true },
	{ "+/#", "$SYS", false },
	{ "a/+", "a/$b", true },
	{ "a/+/b", "a//b", true },
	{ "a/b", "a//b", false },
	{ "+/+", "/", true },
	{ "+", "/", false },
	{ "+/#", "a", true },
	{ "+", "$SYS", false },
	{ "#", "/", true },
};
#define NSPEC (sizeof(spec) / sizeof(spec[0]))

#endif
