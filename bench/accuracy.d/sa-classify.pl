#!/usr/bin/perl
# Classify raw message files with SpamAssassin in this one process, the
# way spamd's child would: local tests only (no DNS, no network checks),
# the site configuration of SITE_DIR (bench/accuracy writes its local.cf:
# Bayes path, bayes_auto_learn 0, required_score), an empty user_prefs.
#
# usage: sa-classify.pl SITE_DIR USER_PREFS LIST_FILE
# LIST_FILE holds one message path a line. Prints one line per message:
# "PATH<TAB>SCORE<TAB>S|H<TAB>BAYES" (S when SpamAssassin's is_spam is
# true; BAYES the BAYES_nn rule that hit, "-" when none did: Bayes was not
# used, e.g. too few messages learned).
use strict;
use warnings;
use Mail::SpamAssassin;

die "usage: $0 SITE_DIR USER_PREFS LIST_FILE\n" unless @ARGV == 3;
my ($site, $prefs, $list) = @ARGV;

my $sa = Mail::SpamAssassin->new({
	local_tests_only    => 1,
	site_rules_filename => $site,
	userprefs_filename  => $prefs,
	dont_copy_prefs     => 1,
});
# Rules are compiled here, once, as spamd does before it forks children.
$sa->compile_now(0, 1);

open(my $lf, '<', $list) or die "$list: $!\n";
chomp(my @paths = <$lf>);
close($lf);

for my $path (@paths) {
	open(my $fh, '<:raw', $path) or die "$path: $!\n";
	my @lines = <$fh>;
	close($fh);
	my $mail = $sa->parse(\@lines);
	my $status = $sa->check($mail);
	my ($bayes) = grep { /^BAYES_\d+$/ } split(/,/, $status->get_names_of_tests_hit());
	printf "%s\t%.3f\t%s\t%s\n", $path, $status->get_score(), $status->is_spam() ? "S" : "H",
		$bayes // "-";
	$status->finish();
	$mail->finish();
}
