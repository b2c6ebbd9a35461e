import * as React from 'react';

/** The current time, ticking every second while `live` (running builds show a growing
 * duration); render stays pure (no Date.now() during render). */
export const useNow = (live: boolean): number => {
  const [now, setNow] = React.useState(() => Date.now());
  React.useEffect(() => {
    if (!live) return undefined;
    const id = setInterval(() => {
      setNow(Date.now());
    }, 1000);
    return () => {
      clearInterval(id);
    };
  }, [live]);
  return now;
};
