#!/usr/bin/perl
# One fold of bench/spam-eval for SpamAssassin: learn the files listed in
# SPAMLIST and HAMLIST into a fresh Bayes database in DIR, then print
# "score<TAB>file" for every file in CHECKLIST. Local tests only (no DNS,
# no network), Debian's rules, autolearn off. One Perl process per fold, so
# the rules are compiled once.
use strict;
use warnings;
use Mail::SpamAssassin;

my ($dir, $root, $spamlist, $hamlist, $checklist) = @ARGV;
open(my $prefs, '>', "$dir/user_prefs") or die "$dir/user_prefs: $!";
print $prefs "bayes_path $dir/bayes\nuse_bayes 1\nbayes_auto_learn 0\nbayes_auto_expire 0\n";
close $prefs;
my $sa = Mail::SpamAssassin->new({
    local_tests_only => 1,
    userprefs_filename => "$dir/user_prefs",
    dont_copy_prefs => 1,
    home_dir_for_helpers => $dir,
});
$sa->init(1);

sub slurp { my ($f) = @_; open(my $h, '<', "$root/$f") or die "$f: $!"; local $/; my $t = <$h>; close $h; return $t; }
sub lines { my ($f) = @_; open(my $h, '<', $f) or die "$f: $!"; my @l = map { chomp; $_ } <$h>; close $h; return @l; }

for my $pair ([$spamlist, 1], [$hamlist, 0]) {
    my ($list, $isspam) = @$pair;
    for my $f (lines($list)) {
        my $mail = $sa->parse(slurp($f));
        $sa->learn($mail, undef, $isspam, 0);
        $mail->finish;
    }
}
$sa->finish_learner();
$sa->init(1);
for my $f (lines($checklist)) {
    my $mail = $sa->parse(slurp($f));
    my $status = $sa->check($mail);
    printf "%.2f\t%s\n", $status->get_score(), $f;
    $status->finish;
    $mail->finish;
}
