/*
 * passwd_cmd.h - "kafkagate passwd": manage a mosquitto-compatible password
 * file (auth/passwd.h), as mosquitto_passwd does.
 *
 *   kafkagate passwd [-c] [--stdin] [--iterations N] FILE USER   add or change
 *   kafkagate passwd -D FILE USER                                delete
 *   kafkagate passwd --verify FILE USER                          check (scripts)
 *
 * The password is prompted for twice without echo when stdin is a
 * terminal, or read from the first line of stdin with --stdin (--verify
 * always reads stdin). New hashes are $7$ with PASSWD_DEFAULT_ITERATIONS
 * (210000, OWASP's figure for PBKDF2-HMAC-SHA512; mosquitto_passwd writes
 * 101, which our reader accepts). The file is replaced atomically (a
 * temporary file in the same directory, fsync, rename): a new file gets
 * mode 0600, an existing one keeps its mode and, when allowed, its owner.
 * Comments and the order of users are kept.
 *
 * Exit status: 0 done, 1 failed (message on stderr), 2 bad usage. With
 * --verify: 0 right password, 1 wrong, 2 no such user, 3 error.
 *
 * Main thread, at start-up instead of the daemon: while prompting it sets
 * handlers for SIGINT, SIGTERM, SIGHUP and SIGQUIT that restore the
 * terminal's echo, and puts the previous handlers back afterwards.
 */
#ifndef KG_PASSWD_CMD_H
#define KG_PASSWD_CMD_H

/* argv[0] is "passwd" (main passes argc - 1, argv + 1). Returns the exit
 * status. Reads stdin, writes stderr and the file named in argv. */
int passwd_cmd_main(int argc, char **argv);

#endif
